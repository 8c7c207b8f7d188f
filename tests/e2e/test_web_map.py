"""The embedding map page: rendered by TestClient with and without a map (empty states, escaping, an
unknown project), and in headless Chromium against the real app: a map of an experiment's features
computed from the page, coloured by class, tag and evaluation outcome, a lasso and a box whose counts
are checked against the points the API gives and the page's view transform, tagging the selection
(and undoing it), the tooltip, the clicked image, zooming and "Open in grid". Large synthetic maps
(10,000 and 100,000 points written straight to the workspace) show that a frame and a lasso stay
fast: the times measured in the page are printed, never asserted."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready, wait_for_job, web_settings

from eval_factories import digits_project, import_folder, make_experiment
from factories import make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.services import edits, evaluation, projects
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio, open_studio

SHOTS = Path("/tmp/shots")
ODD = '<b>"odd"</b>'


def _snap(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"map-{name}.png"))


def write_map(
    studio: Studio,
    project_id: int,
    ids: list[int] | np.ndarray,
    xy: np.ndarray,
    *,
    experiment_id: int | None = None,
    method: str = "umap",
) -> None:
    """A computed map as the map job leaves it: ``maps/<project id>/<key>.npz`` (ids, xy) and its
    description ``<key>.json``; ``embeddings`` unless an experiment is named."""
    import io

    key = "embeddings" if experiment_id is None else f"experiment-{experiment_id}"
    folder = studio.home / "maps" / str(project_id)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.asarray(ids, dtype=np.int64), xy=np.asarray(xy, dtype=np.float32))
    atomic_write_bytes(folder / f"{key}.npz", buf.getvalue())
    meta = {
        "source": "embeddings" if experiment_id is None else "experiment",
        "key": key,
        "method": method,
        "vectors": "synthetic test vectors",
        "points": len(ids),
        "experiment_id": experiment_id,
    }
    atomic_write_bytes(folder / f"{key}.json", json.dumps(meta).encode())


def inside(poly: list[tuple[float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The even-odd rule, as map.js applies it (a ray to the right; the same float operations)."""
    odd = np.zeros(len(x), dtype=bool)
    n = len(poly)
    for a in range(n):
        b = (a - 1) % n
        (xa, ya), (xb, yb) = poly[a], poly[b]
        crosses = (ya > y) != (yb > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (xb - xa) * (y - ya) / (yb - ya) + xa
        odd ^= crosses & (x < at)
    return odd


# ------------------------------------------------------------------------------ pages (TestClient)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Studio]]:
    studio = open_studio(web_settings(tmp_path))
    yield TestClient(create_app(studio)), studio
    studio.close()


def test_map_page_empty_states_escaping_and_unknown_project(
    client: tuple[TestClient, Studio], tmp_path: Path
) -> None:
    http, studio = client
    r = http.get("/projects/nope/map")
    assert r.status_code == 404 and "nope" in r.text

    # no images at all: say where they come from
    projects.create_project(studio, name="empty", task="classification")
    r = http.get("/projects/empty/map")
    assert r.status_code == 200
    assert 'id="map-no-images"' in r.text and 'id="map-empty"' not in r.text
    # every project page links to its map (not a tab: the tabs stay the task's sections)
    assert 'href="/projects/empty/map"' in http.get("/projects/empty").text
    assert 'aria-current="page"' in r.text.split('data-testid="map-link"', 1)[1].split(">", 1)[0]

    # images, but no embeddings and no experiment: nothing to map yet, and what to do about it
    p = projects.create_project(studio, name="odd", task="classification")
    run_import(studio, "odd", make_class_folders(tmp_path / "odd-src", {"cat": 3, "dog": 3}))
    ids = [s["id"] for s in http.get("/api/v1/samples", params={"project": "odd"}).json()["items"]]
    edits.edit_labels(
        studio, project="odd", selection={"sample_ids": ids[:2]}, set_to=[ODD], create_classes=True
    )
    r = http.get("/projects/odd/map")
    assert r.status_code == 200
    assert (
        'id="map-nothing"' in r.text and "/projects/odd/search" in r.text and "/projects/odd/train" in r.text
    )
    assert ODD not in r.text and "&lt;b&gt;" not in r.text  # the class name only in escaped JSON
    assert '\\u003cb\\u003e\\"odd\\"\\u003c/b\\u003e' in r.text
    assert '"computed": false' in r.text.replace("&#34;", '"')

    # a computed map (of the CLIP embeddings): described, the empty states hidden behind x-cloak
    xy = np.random.default_rng(0).random((len(ids), 2)).astype(np.float32)
    write_map(studio, p["id"], ids, xy)
    r = http.get("/projects/odd/map")
    assert r.status_code == 200
    config = r.text.replace("&#34;", '"')
    assert '"computed": true' in config and '"method": "umap"' in config and f'"points": {len(ids)}' in config
    assert "x-show=\"state === 'empty'\" x-cloak" in r.text  # shown only if the points fail to load
    assert ODD not in r.text
    got = http.get("/api/v1/projects/odd/map").json()
    assert ODD in got["classes"] and got["points"] == len(ids)


def test_map_page_offers_experiments_when_there_are_no_embeddings(
    client: tuple[TestClient, Studio], tmp_path: Path
) -> None:
    http, studio = client
    digits_project(studio, tmp_path, per_class=4)
    make_experiment(studio, project="digits", name="exp1")
    r = http.get("/projects/digits/map")
    assert r.status_code == 200
    # the experiment is the map offered (the embeddings are not there): its compute button
    assert 'id="map-empty"' in r.text and 'data-testid="map-empty-compute"' in r.text
    assert '<option value="experiment:exp1" selected>' in r.text
    # asked for the embeddings: explained, with the experiment's features as the way out
    r = http.get("/projects/digits/map", params={"source": "embeddings"})
    assert "No embeddings to map" in r.text
    assert 'href="/projects/digits/map?source=experiment&amp;experiment=exp1"' in r.text


# --------------------------------------------------------------------------------- in the browser


def _view(page: Any) -> dict[str, float]:
    """The canvas's place on the page and the map's view transform (CSS px)."""
    got: dict[str, float] = page.evaluate(
        """() => {
          const r = document.getElementById('map-canvas').getBoundingClientRect();
          return Object.assign({ left: r.left, top: r.top }, window.vistudioMap.transform());
        }"""
    )
    return got


def _screen(view: dict[str, float], x: float, y: float) -> tuple[float, float]:
    """Where the data point (x, y) is on the page."""
    return view["left"] + view["tx"] + x * view["scale"], view["top"] + view["ty"] + y * view["scale"]


def _expected_in_lasso(view: dict[str, float], path: list[tuple[int, int]], m: dict[str, Any]) -> set[int]:
    """The map's points inside the polygon the mouse drew, reckoned as the page does: the mouse's
    positions relative to the canvas, taken to data units by the view transform."""
    poly = [
        ((px - view["left"] - view["tx"]) / view["scale"], (py - view["top"] - view["ty"]) / view["scale"])
        for px, py in path
    ]
    hit = inside(poly, np.asarray(m["x"], dtype=np.float64), np.asarray(m["y"], dtype=np.float64))
    return {int(i) for i, h in zip(m["ids"], hit, strict=True) if h}


def _lasso(page: Any, path: list[tuple[int, int]]) -> None:
    page.mouse.move(*path[0])
    page.mouse.down()
    for x, y in path[1:]:
        page.mouse.move(x, y)
    page.mouse.up()


def _around(
    cx: float, cy: float, rx: float, ry: float, n: int = 14, wobble: float = 0.0
) -> list[tuple[int, int]]:
    """A free-hand-like closed path of ``n`` whole-pixel points round (cx, cy)."""
    rng = random.Random(7)
    out = []
    for k in range(n):
        a = 2 * math.pi * k / n
        f = 1 + wobble * (rng.random() - 0.5)
        out.append((round(cx + rx * f * math.cos(a)), round(cy + ry * f * math.sin(a))))
    return out


def _tagged(base: str, project: str, tag: str) -> int:
    r = httpx.get(f"{base}/api/v1/samples", params={"project": project, "tag": tag, "limit": 1})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


@pytest.mark.browser
def test_empty_states_in_the_browser(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    p = projects.create_project(studio, name="bare", task="classification")
    import_folder(studio, "bare", make_class_folders(root / "bare-src", {"cat": 2, "dog": 2}))
    page.goto(base + "/projects/bare/map")
    alpine_ready(page)
    nothing = page.locator("#map-nothing")
    expect(nothing).to_be_visible()
    expect(nothing).to_contain_text("Nothing to map yet")
    expect(nothing.get_by_role("link", name="Search")).to_have_attribute("href", "/projects/bare/search")
    expect(page.locator("#map-compute")).to_be_disabled()
    _snap(page, "nothing")

    # a map whose images were all deleted since: no points, and what to do
    write_map(studio, p["id"], [10**9], np.zeros((1, 2), dtype=np.float32))
    page.reload()
    alpine_ready(page)
    expect(page.locator("#map-no-points")).to_be_visible()
    expect(page.locator(".map-view")).to_have_attribute("data-state", "none")
    expect(page.get_by_test_id("map-selected")).to_have_text("0 selected")
    _snap(page, "no-points")

    # on a phone: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 800})
    expect(page.locator("#map-no-points")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    _snap(page, "phone")


@pytest.mark.browser
@pytest.mark.slow
def test_compute_colour_lasso_tag_undo(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    digits_project(studio, root, name="digits", per_class=20)  # digits 0, 1, 2 × 20
    make_experiment(studio, project="digits", name="exp1", train_steps=4)

    # from the project's pages: the link in the head
    page.goto(base + "/projects/digits")
    alpine_ready(page)
    _snap(page, "dataset-head")
    page.get_by_test_id("map-link").click()
    expect(page).to_have_url(base + "/projects/digits/map")
    expect(page.get_by_test_id("map-link")).to_have_attribute("aria-current", "page")
    alpine_ready(page)
    expect(page.locator("#map-empty")).to_be_visible()
    expect(page.locator("#map-empty")).to_contain_text("No map of the features of exp1 yet")
    expect(page.locator("#map-source")).to_have_value("experiment:exp1")
    expect(page.locator("#map-meta")).to_contain_text("Not computed yet")
    _snap(page, "empty")

    # compute it from the page (the live server's worker runs the job), PCA for speed
    page.locator("#map-method").select_option("pca")
    page.get_by_test_id("map-empty-compute").click()
    expect(page.locator(".map-view")).to_have_attribute("data-state", "ready", timeout=120_000)
    expect(page.locator("#map-meta")).to_contain_text("PCA of 60 images")
    expect(page.locator("#map-compute")).to_have_text("Recompute")
    m = httpx.get(
        f"{base}/api/v1/projects/digits/map", params={"source": "experiment", "experiment": "exp1"}
    ).json()
    assert m["points"] == 60 and m["method"] == "pca"

    # coloured by class: one legend row per digit, 20 points each, in the class colours
    rows = page.locator(".map-legend-row")
    expect(rows).to_have_count(3)
    expect(rows.locator(".map-legend-name")).to_have_text(["0", "1", "2"])
    expect(rows.locator(".map-count")).to_have_text(["20", "20", "20"])
    swatches = rows.locator(".map-swatch").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert len(set(swatches)) == 3
    # the canvas shows them: the class colour of digit 0 is among its pixels
    drawn = page.evaluate(
        """(css) => {
          const c = document.getElementById('map-canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const m = css.match(/\\d+/g).map(Number);
          for (let k = 0; k < d.length; k += 4) if (d[k] === m[0] && d[k + 1] === m[1] && d[k + 2] === m[2]) return true;
          return false;
        }""",
        swatches[0],
    )
    assert drawn

    # a lasso round the middle of the map selects exactly the points inside the drawn path
    page.locator("[data-tool=lasso]").click()
    view = _view(page)
    xs, ys = np.asarray(m["x"]), np.asarray(m["y"])
    (ax, ay), (bx, by) = _screen(view, xs.min(), ys.min()), _screen(view, xs.max(), ys.max())
    path = _around((ax + bx) / 2, (ay + by) / 2, (bx - ax) * 0.33, (by - ay) * 0.4, n=16, wobble=0.3)
    _lasso(page, path)
    expected = _expected_in_lasso(view, path, m)
    assert 0 < len(expected) < 60
    expect(page.get_by_test_id("map-selected")).to_have_text(f"{len(expected)} selected")
    assert set(page.evaluate("() => window.vistudioMap.selectedIds()")) == expected
    assert page.evaluate("() => window.vistudioMap.stats.lassoVertices") == len(path)
    page.mouse.move(5, 5)
    _snap(page, "lasso")

    # tag them: one change; the API counts them; coloured by that tag the legend agrees
    page.locator("#map-tag-name").fill("picked")
    page.locator("#map-tag-selection").click()
    message = page.locator("#map-message")
    expect(message).to_contain_text(
        f"Tagged {len(expected)} image{'s' if len(expected) != 1 else ''} “picked”."
    )
    assert _tagged(base, "digits", "picked") == len(expected)
    page.locator("#map-colour").select_option("tag")
    expect(page.locator("#map-tag")).to_have_value("picked")
    expect(page.locator(".map-legend-row[data-key=tagged] .map-count")).to_have_text(str(len(expected)))
    expect(page.locator(".map-legend-row[data-key=untagged] .map-count")).to_have_text(
        str(60 - len(expected))
    )
    _snap(page, "tagged")

    # Undo takes the change back, and the tag colouring follows
    page.locator("#map-undo").click()
    expect(message).to_contain_text(f"Undone: “picked” taken off {len(expected)} image")
    assert _tagged(base, "digits", "picked") == 0
    expect(page.locator(".map-legend-row[data-key=untagged] .map-count")).to_have_text("60")

    # a legend row selects its points; Esc clears the selection
    page.locator("#map-colour").select_option("class")
    page.locator(".map-legend-row[data-key='class:1']").click()
    expect(page.get_by_test_id("map-selected")).to_have_text("20 selected")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("map-selected")).to_have_text("0 selected")

    # a box (Shift+drag, whatever the tool): the points inside the rectangle
    view = _view(page)
    x0, y0 = round(ax + (bx - ax) * 0.1), round(ay + (by - ay) * 0.1)
    x1, y1 = round(ax + (bx - ax) * 0.6), round(ay + (by - ay) * 0.7)
    page.keyboard.down("Shift")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2)
    page.mouse.move(x1, y1)
    page.mouse.up()
    page.keyboard.up("Shift")
    box = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    in_box = _expected_in_lasso(view, box, m)
    assert in_box
    expect(page.get_by_test_id("map-selected")).to_have_text(f"{len(in_box)} selected")
    assert set(page.evaluate("() => window.vistudioMap.selectedIds()")) == in_box

    # hovering a point shows its thumbnail and name; a click shows it beside the map
    i = int(np.argmin(np.abs(xs - np.median(xs)) + np.abs(ys - np.median(ys))))
    sx, sy = _screen(view, xs[i], ys[i])
    page.mouse.move(sx + 0.4, sy + 0.4)
    tip = page.locator("#map-tip")
    expect(tip).to_be_visible()
    hovered = page.evaluate("() => window.vistudioMap.ids[window.vistudioMap.hover]")
    name = httpx.get(f"{base}/api/v1/samples/{int(hovered)}").json()["sample"]["name"]
    expect(tip.locator(".map-tip-name")).to_have_text(name)
    page.wait_for_function("() => document.querySelector('#map-tip img').complete")
    _snap(page, "tooltip")
    page.mouse.click(sx + 0.4, sy + 0.4)
    point = page.get_by_test_id("map-point")
    expect(point).to_be_visible()
    expect(point.locator(".map-point-name")).to_have_text(name)
    expect(point.get_by_test_id("map-point-open")).to_have_attribute(
        "href", f"/projects/digits?sample={int(hovered)}"
    )

    # the wheel zooms round the cursor: the data point under it stays there; Fit goes back
    before = _view(page)
    cx, cy = round(sx), round(sy)  # the wheel event's position is in whole pixels
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => window.vistudioMap.transform().scale > {before['scale'] * 1.5}")
    after = _view(page)
    for at, t, o in ((cx, "tx", "left"), (cy, "ty", "top")):
        under_before = (at - before[o] - before[t]) / before["scale"]
        under_after = (at - after[o] - after[t]) / after["scale"]
        assert abs(under_before - under_after) < 1e-9
    expect(page.locator("#map-zoom")).not_to_have_text("100%")
    page.locator("#map-fit").click()
    expect(page.locator("#map-zoom")).to_have_text("100%")

    # "Open in grid" tags the selection, then opens the grid filtered by that tag
    view = _view(page)
    page.locator("[data-tool=lasso]").click()
    _lasso(page, path)
    picked = _expected_in_lasso(view, path, m)
    expect(page.get_by_test_id("map-selected")).to_have_text(f"{len(picked)} selected")
    page.locator("#map-tag-name").fill("look again")
    with page.context.expect_page() as popup_info:
        page.locator("#map-open-grid").click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.url == f"{base}/projects/digits?tag=look+again"
    expect(popup.get_by_test_id("grid-total")).to_have_text(str(len(picked)))
    popup.close()
    expect(page.locator("#map-grid-link")).to_have_attribute("href", "/projects/digits?tag=look+again")
    assert _tagged(base, "digits", "look again") == len(picked)

    # coloured by an evaluation's outcome: right, wrong, and the images it did not see
    ev = evaluation.start_evaluation(studio, project="digits", experiment="exp1", subsets="test")
    assert wait_for_job(studio, ev["job"]["id"], timeout=120)["status"] == "succeeded"
    page.reload()
    alpine_ready(page)
    expect(page.locator(".map-view")).to_have_attribute("data-state", "ready")
    page.locator("#map-colour").select_option("outcome")
    expect(page.locator("#map-outcome")).to_have_value("exp1")
    got = httpx.get(
        f"{base}/api/v1/projects/digits/map",
        params={"source": "experiment", "experiment": "exp1", "outcome": "exp1"},
    ).json()["outcome"]
    for key, value in (("right", 1), ("wrong", 0), ("none", -1)):
        n = got.count(value)
        row = page.locator(f".map-legend-row[data-key={key}]")
        if n:
            expect(row.locator(".map-count")).to_have_text(str(n))
        else:
            expect(row).to_have_count(0)
    assert got.count(-1) == 48  # the test subset is 12 of the 60
    page.mouse.move(5, 5)
    _snap(page, "outcome")


def big_project(studio: Studio, name: str, n: int, *, classes: int = 20) -> dict[str, Any]:
    """A classification project of ``n`` sample rows inserted straight into the database (as
    benchmarks/browse.py builds its), each labelled, and a map of them: ``classes`` blobs of
    points, one per class, written as the map job writes one (source: the CLIP embeddings)."""
    from sqlalchemy import insert, select

    from vistudio.db import Annotation, LabelClass, Sample

    p = projects.create_project(studio, name=name, task="classification")
    rng = np.random.default_rng(1)
    with studio.sessions.begin() as s:
        class_ids = []
        for c in range(classes):
            row = LabelClass(project_id=p["id"], name=f"class-{c:02d}", ordinal=c)
            s.add(row)
            s.flush()
            class_ids.append(row.id)
        for lo in range(0, n, 20_000):
            s.execute(
                insert(Sample),
                [
                    {
                        "project_id": p["id"],
                        "sha256": f"{p['id']:08x}{i:056x}",
                        "name": f"photos/{i:06d}.jpg",
                        "storage": "reference",
                        "path": f"/photos/{name}/{i}.jpg",
                        "width": 640,
                        "height": 480,
                        "format": "JPEG",
                        "bytes": 100_000,
                        "phash": f"{i * 2654435761 % 2**64:016x}",
                        "exif": {},
                    }
                    for i in range(lo, min(n, lo + 20_000))
                ],
            )
        ids = np.asarray(
            list(s.scalars(select(Sample.id).where(Sample.project_id == p["id"]).order_by(Sample.id))),
            dtype=np.int64,
        )
        label = rng.integers(0, classes, size=n)
        s.execute(
            insert(Annotation),
            [
                {"sample_id": int(i), "kind": "label", "class_id": class_ids[int(c)]}
                for i, c in zip(ids, label, strict=True)
            ],
        )
    centres = rng.random((classes, 2)) * 8
    xy = centres[label] + rng.normal(0, 0.35 + 0.4 * rng.random((n, 1)), size=(n, 2))
    xy = (xy - xy.min(0)) / (xy.max(0) - xy.min(0)).max()
    write_map(studio, p["id"], ids, xy.astype(np.float32))
    return p


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("n", [10_000, 100_000])
def test_large_maps_draw_and_lasso(live_server: tuple[str, Studio, Path], page: Any, n: int) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    name = f"big{n}"
    big_project(studio, name, n)
    page.goto(f"{base}/projects/{name}/map")
    alpine_ready(page)
    expect(page.locator(".map-view")).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(page.locator("#map-meta")).to_contain_text(f"UMAP of {n:,} images")
    expect(page.locator(".map-legend-row")).to_have_count(20)
    m = httpx.get(f"{base}/api/v1/projects/{name}/map", timeout=60).json()
    assert m["points"] == n
    counts = page.locator(".map-legend-row .map-count").all_inner_texts()
    assert sum(int(c.replace(",", "")) for c in counts) == n

    # one full frame, measured in the page (the median of a few), and hit tests for the tooltip
    page.mouse.move(5, 5)
    _snap(page, f"{n // 1000}k-all")
    frames = page.evaluate("() => Array.from({ length: 7 }, () => window.vistudioMap.renderNow())")
    frame_ms = sorted(frames)[len(frames) // 2]
    hover_ms = page.evaluate(
        """() => {
          const m = window.vistudioMap, t0 = performance.now();
          for (let k = 0; k < 1000; k++) m.nearest((k * 37) % m.w, (k * 53) % m.h, 8);
          return (performance.now() - t0) / 1000;
        }"""
    )

    # a lasso with the mouse round a third of the map: the selection is exactly what lies inside
    page.locator("[data-tool=lasso]").click()
    view = _view(page)
    xs, ys = np.asarray(m["x"]), np.asarray(m["y"])
    (ax, ay), (bx, by) = _screen(view, xs.min(), ys.min()), _screen(view, xs.max(), ys.max())
    path = _around(
        ax + (bx - ax) * 0.4, ay + (by - ay) * 0.45, (bx - ax) * 0.3, (by - ay) * 0.3, n=40, wobble=0.25
    )
    _lasso(page, path)
    expected = _expected_in_lasso(view, path, m)
    assert 0 < len(expected) < n
    expect(page.get_by_test_id("map-selected")).to_have_text(f"{len(expected):,} selected")
    assert set(page.evaluate("() => window.vistudioMap.selectedIds()")) == expected
    lasso_ms = page.evaluate("() => window.vistudioMap.stats.lassoMs")
    selected_frame_ms = page.evaluate("() => window.vistudioMap.renderNow()")
    page.mouse.move(5, 5)
    _snap(page, f"{n // 1000}k")

    # the tooltip among many points: the one under the cursor, named (these rows have no thumbnail)
    k = len(m["ids"]) // 2
    sx, sy = _screen(view, xs[k], ys[k])
    page.mouse.move(round(sx), round(sy))
    tip = page.locator("#map-tip")
    expect(tip).to_be_visible()
    hovered = int(page.evaluate("() => window.vistudioMap.ids[window.vistudioMap.hover]"))
    expect(tip.locator(".map-tip-name")).to_have_text(re.compile(r"^photos/\d{6}\.jpg$"))
    expect(tip.locator(".map-tip-name")).to_have_text(f"photos/{m['ids'].index(hovered):06d}.jpg")
    _snap(page, f"{n // 1000}k-tooltip")
    print(
        f"\nmap of {n:,} points: frame {frame_ms:.1f} ms (with a selection of {len(expected):,}: "
        f"{selected_frame_ms:.1f} ms), lasso of {len(path)} vertices {lasso_ms:.1f} ms, "
        f"hit test {hover_ms * 1000:.1f} µs (headless Chromium, software rendering)"
    )


@pytest.mark.browser
def test_sharp_at_device_pixel_ratio_2(live_server: tuple[str, Studio, Path], browser: Any) -> None:
    """On a HiDPI screen the canvas has twice the pixels, and a lasso still selects what it circles."""
    from playwright.sync_api import expect

    base, studio, _ = live_server
    big_project(studio, "hidpi", 2_000, classes=5)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=2)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/projects/hidpi/map")
        alpine_ready(page)
        expect(page.locator(".map-view")).to_have_attribute("data-state", "ready")
        size = page.evaluate(
            "() => { const c = document.getElementById('map-canvas');"
            " return [c.width, c.height, c.clientWidth, c.clientHeight, window.vistudioMap.dpr]; }"
        )
        assert size[4] == 2 and size[0] == 2 * size[2] and size[1] == 2 * size[3]
        m = httpx.get(f"{base}/api/v1/projects/hidpi/map").json()
        page.keyboard.press("l")
        view = _view(page)
        xs, ys = np.asarray(m["x"]), np.asarray(m["y"])
        (ax, ay), (bx, by) = _screen(view, xs.min(), ys.min()), _screen(view, xs.max(), ys.max())
        path = _around((ax + bx) / 2, (ay + by) / 2, (bx - ax) * 0.35, (by - ay) * 0.3, n=24, wobble=0.3)
        _lasso(page, path)
        expected = _expected_in_lasso(view, path, m)
        assert 0 < len(expected) < 2_000
        expect(page.get_by_test_id("map-selected")).to_have_text(f"{len(expected):,} selected")
        assert set(page.evaluate("() => window.vistudioMap.selectedIds()")) == expected
        page.mouse.move(5, 5)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "map-hidpi.png"))
        assert not errors, errors
    finally:
        context.close()
