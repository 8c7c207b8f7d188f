"""Runs page: list with filters, chart and disk usage; detail; the sandboxed report; file serving
that stays inside a run's outputs; the comparison of two runs; delete."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from web_factories import alpine_ready, wait_for_job

from vistudio.api.app import create_app
from vistudio.db import Run, RunStage
from vistudio.jobs.worker import Worker
from vistudio.services import runs
from vistudio.studio import Studio

HX = {"HX-Request": "true"}
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# the page's width, and the widest element that sticks out on the right (a table's own scroller aside)
WIDEST = """() => Math.max(document.documentElement.scrollWidth,
  ...[...document.querySelectorAll('main *')].filter(el => !el.closest('.table-wrap'))
     .map(el => Math.ceil(el.getBoundingClientRect().right)))"""
LONG = "a-pipeline-with-a-rather-long-name-that-should-truncate-nicely"  # 62 characters, under the 64 allowed


def _pipeline(name: str = "demo") -> dict[str, Any]:
    return {
        "name": name,
        "version": "1",
        "output_mode": "sample",
        "save_outputs": {"max_samples": 4},
        "stages": [
            {"name": "load"},
            {"name": "small", "uses": "resize", "params": {"max_side": 32}},
            {"name": "grayscale"},
        ],
    }


def _images(folder: Path) -> Path:
    """Three pictures and x.png, a valid picture for now (``_break`` spoils it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.new("RGB", (40, 30), (60 * i, 120, 200 - 50 * i)).save(folder / f"img{i}.png")
    Image.new("RGB", (36, 36), (250, 200, 20)).save(folder / "x.png")
    return folder


def _break(folder: Path) -> None:
    (folder / "x.png").write_bytes(b"not an image")


def _latest(studio: Studio) -> dict[str, Any]:
    return dict(runs.list_runs(studio, limit=1)["items"][0])


def _run_inline(
    studio: Studio, folder: Path, *, name: str = "demo", tag: str | None = None
) -> dict[str, Any]:
    job = runs.start_run(studio, pipeline=_pipeline(name), input_dir=folder, tag=tag)
    done = Worker(studio).run_to_end(job["id"])
    assert done is not None and done.status == "succeeded", done and done.error
    return _latest(studio)


def _three_runs(studio: Studio, root: Path, run: Any) -> tuple[dict[str, Any], ...]:
    """A: demo, all good (tag base). B: demo, x.png broken (tag next). C: another pipeline, untagged."""
    folder = _images(root / "in")
    a = run(studio, folder, tag="base")
    _break(folder)
    b = run(studio, folder, tag="next")
    other = _images(root / "in-other")
    c = run(studio, other, name=LONG)
    return a, b, c


def _set(studio: Studio, run_id: str, **values: Any) -> None:
    with studio.sessions.begin() as s:
        row = s.get(Run, run_id)
        assert row is not None
        for k, v in values.items():
            setattr(row, k, v)


@pytest.fixture
def client(web_studio: Studio) -> TestClient:
    return TestClient(create_app(web_studio))


@pytest.fixture
def three(web_studio: Studio, tmp_path: Path) -> tuple[dict[str, Any], ...]:
    return _three_runs(web_studio, tmp_path, _run_inline)


def _row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([^"]+)"', html)


def test_runs_empty_state(client: TestClient) -> None:
    r = client.get("/runs")
    assert r.status_code == 200
    assert "<title>Runs · vistudio</title>" in r.text
    assert "No runs yet" in r.text and "vistudio run pipeline.yaml --input DIR" in r.text
    assert re.search(r'<a href="/runs" class="active" aria-current="page">Runs</a>', r.text)
    assert 'href="/jobs" class=""' in r.text  # Jobs is not marked active here


def test_runs_list_and_filters(
    client: TestClient, web_studio: Studio, three: tuple[dict[str, Any], ...]
) -> None:
    a, b, c = three
    page = client.get("/runs")
    assert page.status_code == 200
    assert _row_ids(page.text) == [c["id"], b["id"], a["id"]]  # newest first
    assert "data-chart=" in page.text and "chart.umd.min.js" in page.text
    assert 'data-testid="disk-usage"' in page.text
    assert f'href="/runs/{a["id"]}/report"' in page.text
    assert f'<option value="{LONG}"' in page.text and '<option value="demo"' in page.text
    assert '<option value="base"' in page.text and '<option value="next"' in page.text

    # the filter form's htmx request gets only the table
    r = client.get("/runs?pipeline=demo", headers=HX)
    assert r.status_code == 200 and "<html" not in r.text
    assert _row_ids(r.text) == [b["id"], a["id"]]
    assert _row_ids(client.get("/runs?tag=next", headers=HX).text) == [b["id"]]
    assert _row_ids(client.get("/runs?pipeline=demo&tag=base").text) == [a["id"]]

    _set(web_studio, c["id"], status="cancelled")  # cancelling mid-run would be timing-dependent
    assert _row_ids(client.get("/runs?status=cancelled", headers=HX).text) == [c["id"]]
    # B's x.png is broken: some items failed, so it is partial, not succeeded, with its own badge
    assert _row_ids(client.get("/runs?status=succeeded", headers=HX).text) == [a["id"]]
    partial = client.get("/runs?status=partial", headers=HX).text
    assert _row_ids(partial) == [b["id"]] and 'class="badge status-partial"' in partial
    assert '<option value="partial"' in page.text
    none = client.get("/runs?status=running", headers=HX)
    assert _row_ids(none.text) == [] and "No runs match these filters" in none.text
    assert _row_ids(client.get("/runs?since=2000-01-01&until=2999-12-31&slower=0", headers=HX).text)
    assert _row_ids(client.get("/runs?until=2000-01-01", headers=HX).text) == []
    assert _row_ids(client.get("/runs?slower=99999999", headers=HX).text) == []

    bad = client.get("/runs?since=yesterday", headers=HX)
    assert bad.status_code == 422 and 'id="runs-table"' in bad.text and "date like" in bad.text
    assert client.get("/runs?slower=fast").status_code == 200  # the whole page, with the message
    assert "number of milliseconds" in client.get("/runs?slower=fast").text


def test_run_detail(client: TestClient, web_studio: Studio, three: tuple[dict[str, Any], ...]) -> None:
    _, b, _ = three
    r = client.get(f"/runs/{b['id']}")
    assert r.status_code == 200
    html = r.text
    assert 'data-testid="stages-table"' in html
    for stage in ("load", "small", "grayscale"):
        assert f'title="{stage}">{stage}</td>' in html
    assert 'class="bar-fill" style="width: 100.0%"' in html  # the slowest stage's bar is full
    assert "small.width" in html  # a metric
    assert f'href="/runs/{b["id"]}/report"' in html
    assert str(web_studio.home / b["outputs_dir"]) in html
    assert f'action="/runs/{b["id"]}/delete"' in html


def test_report_is_served_with_a_strict_csp(
    client: TestClient, web_studio: Studio, three: tuple[dict[str, Any], ...]
) -> None:
    a, _, _ = three
    r = client.get(f"/runs/{a['id']}/report")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert r.text == (web_studio.home / a["report_path"]).read_text()
    assert "<h2>Stages</h2>" in r.text and "data:image/png;base64," in r.text

    # a report path (from the database) that points outside the workspace is refused
    (web_studio.home.parent / "outside.html").write_text("<p>secret</p>")
    _set(web_studio, a["id"], report_path="../outside.html")
    assert client.get(f"/runs/{a['id']}/report").status_code == 404
    _set(web_studio, a["id"], report_path=str(web_studio.home.parent / "outside.html"))
    assert client.get(f"/runs/{a['id']}/report").status_code == 404


def test_files_stay_inside_the_run(
    client: TestClient, web_studio: Studio, three: tuple[dict[str, Any], ...]
) -> None:
    a, _, _ = three
    base = f"/runs/{a['id']}/files"
    ok = client.get(f"{base}/stages/load/x_load_data.png")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    assert ok.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"{base}/report.html").headers["content-security-policy"].endswith("sandbox")

    secret = web_studio.home / "secret.txt"
    secret.write_text("secret")
    run_dir = web_studio.home / a["outputs_dir"]
    (run_dir / "link.txt").symlink_to(secret)
    (run_dir / "linkdir").symlink_to(web_studio.home, target_is_directory=True)
    for path in (
        "%2e%2e/%2e%2e/secret.txt",
        "..%2F..%2Fsecret.txt",
        "stages/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        f"{secret}",
        "link.txt",
        "linkdir/secret.txt",
        "stages",
        "no-such-file.png",
    ):
        r = client.get(f"{base}/{path}")
        assert r.status_code == 404, (path, r.status_code)
        assert "secret" not in r.text
    for url in ("/runs/nope", "/runs/nope/report", "/runs/nope/files/stages/load/x_load_data.png"):
        assert client.get(url).status_code == 404, url
    assert "Not found" in client.get("/runs/nope").text


def test_compare_shows_regressions(client: TestClient, three: tuple[dict[str, Any], ...]) -> None:
    a, b, _ = three
    r = client.get(f"/runs/compare?a={a['id']}&b={b['id']}")
    assert r.status_code == 200
    html = r.text
    assert 'data-testid="regressions"' in html
    assert "item x got worse" in html
    assert "failed items 0 → 1" in html
    assert 'class="runs-regressed"' in html and ">regression</span>" in html
    # the changed item's outputs in A are shown from inside A's outputs folder, and they load
    thumbs = re.findall(r'<img src="(/runs/[^"]+/files/[^"]+)"', html)
    assert thumbs and all(t.startswith(f"/runs/{a['id']}/files/stages/") for t in thumbs)
    assert all(client.get(t).status_code == 200 for t in thumbs)
    assert 'data-testid="stage-deltas"' in html and 'data-testid="metric-deltas"' in html

    # the list page's two checkboxes send run=…&run=…: the older run becomes A
    r2 = client.get(f"/runs/compare?run={b['id']}&run={a['id']}")
    assert r2.status_code == 200 and "item x got worse" in r2.text
    assert client.get(f"/runs/compare?run={a['id']}").status_code == 422
    assert client.get(f"/runs/compare?a={a['id']}&b={a['id']}").status_code == 422
    assert client.get(f"/runs/compare?a={a['id']}&b=nope").status_code == 404


def test_compare_marks_a_change_of_87_percent(
    client: TestClient, web_studio: Studio, three: tuple[dict[str, Any], ...]
) -> None:
    a, b, _ = three
    _set(web_studio, a["id"], metrics={"grayscale.mean_intensity": 100.0, "grayscale.steady": 2.0})
    _set(web_studio, b["id"], metrics={"grayscale.mean_intensity": 187.0, "grayscale.steady": 2.01})
    with web_studio.sessions.begin() as s:  # load: 0.30 → 0.56 ms per item, +87 % but under 0.5 ms
        for run_id, ms in ((a["id"], 0.30), (b["id"], 0.561)):
            st = s.get(RunStage, (run_id, "load"))
            assert st is not None
            st.total_ms = ms * (st.ok + st.failed)
    html = client.get(f"/runs/compare?a={a['id']}&b={b['id']}").text
    cells = dict(
        re.findall(
            r'<td class="truncate-cell[^"]*" title="([^"]+)">.*?data-changed="(true|false)"', html, re.S
        )
    )
    assert cells["grayscale.mean_intensity"] == "true" and cells["grayscale.steady"] == "false"
    assert re.search(
        r'class="runs-num nowrap delta-up" data-changed="true">\+87 <span class="small">\(\+87\.0%\)', html
    )
    assert cells["load"] == "true" and "slower · noise" in html  # marked, though not a regression
    assert "Changes over 5 % are marked" in html


def _validation_run(studio: Studio, root: Path, *, broken: int) -> dict[str, Any]:
    """Four 8×8 colour squares classified by colour; t0's truth is wrong (a mistake) and the
    first ``broken`` files are not images (failed items)."""
    root.mkdir(parents=True)
    rows = ["path,label"]
    for i in range(4):
        Image.new("RGB", (8, 8), (220, 20, 20) if i % 2 == 0 else (20, 20, 220)).save(root / f"t{i}.png")
        rows.append(f"t{i}.png,{'blue' if i % 2 == 0 and i == 0 else ('red' if i % 2 == 0 else 'blue')}")
    for i in range(4 - broken, 4):
        (root / f"t{i}.png").write_bytes(b"not an image")
    (root / "truth.csv").write_text("\n".join(rows) + "\n")
    pipeline = {
        "name": "colours",
        "output_mode": "validation",
        "stages": [{"name": "load"}, {"name": "classify", "uses": "custom:toy_stages:colour_classifier"}],
    }
    job = runs.start_run(studio, pipeline=pipeline, input_dir=root, ground_truth=root / "truth.csv")
    # a live server's embedded worker may claim the job first: then wait for it to finish
    Worker(studio).run_to_end(job["id"])
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    return _latest(studio)


def test_run_detail_says_why_items_failed_and_shows_readable_images(
    client: TestClient, web_studio: Studio, tmp_path: Path
) -> None:
    partial = _validation_run(web_studio, tmp_path / "partial", broken=2)
    assert partial["status"] == "partial"
    html = client.get(f"/runs/{partial['id']}").text
    assert 'class="badge status-partial" data-testid="run-status">partial</span>' in html
    outcome = html[html.index('data-testid="run-outcome"') :]
    assert "2 of 4 items failed, 3 mistakes (failures included)." in outcome
    assert re.search(
        r'<strong>2 items</strong> failed in <strong>load</strong>: <span class="break">load: cannot read t[23]\.png',
        outcome,
    )
    # t0's side-by-side at its own size: the 8×8 square was scaled up to 160 px when saved
    figure = re.search(
        rf'<figure class="runs-image" style="width: (\d+)px">\s*<a href="/runs/{partial["id"]}/files/errors/'
        r't0_compare\.png"[^>]*><img src="[^"]+" alt="t0_compare.png" width="(\d+)" height="(\d+)"',
        html,
    )
    assert figure and int(figure.group(3)) >= 160 + 40 and figure.group(1) == figure.group(2)
    assert "Mistakes side by side" in html

    failed = _validation_run(web_studio, tmp_path / "failed", broken=4)
    html = client.get(f"/runs/{failed['id']}").text
    assert failed["status"] == "failed" and "All 4 items failed." in html and "alert-error" in html
    assert "1 mistakes" not in html and "1 items" not in html


def test_delete_run(client: TestClient, web_studio: Studio, three: tuple[dict[str, Any], ...]) -> None:
    a, b, _ = three
    folder = web_studio.home / b["outputs_dir"]
    assert folder.is_dir()
    r = client.post(f"/runs/{b['id']}/delete", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs"
    assert client.get(f"/runs/{b['id']}").status_code == 404
    assert client.get(f"/runs/{b['id']}/report").status_code == 404
    assert not folder.exists()
    assert b["id"] not in _row_ids(client.get("/runs").text)
    assert client.post(f"/runs/{b['id']}/delete").status_code == 404
    # a cross-site form post is refused by the app's guard
    assert (
        client.post(f"/runs/{a['id']}/delete", headers={"Origin": "http://evil.example"}).status_code == 403
    )
    assert client.get(f"/runs/{a['id']}").status_code == 200


# --- in a browser ---------------------------------------------------------------------------------


def _run_live(studio: Studio, folder: Path, *, name: str = "demo", tag: str | None = None) -> dict[str, Any]:
    job = runs.start_run(studio, pipeline=_pipeline(name), input_dir=folder, tag=tag)
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    return _latest(studio)


@pytest.mark.browser
def test_runs_in_a_browser(live_server: tuple[str, Studio, Path], page: Any, shot: Any) -> None:
    url, studio, root = live_server
    a, b, c = _three_runs(studio, root / "runs-browser", _run_live)

    page.goto(f"{url}/runs")
    alpine_ready(page)
    page.wait_for_function("() => document.querySelector('canvas[data-chart]')?._chart !== undefined")
    box = page.locator("[data-testid=runs-chart]").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100
    assert page.locator("tr[data-run-id]").count() == 3
    assert page.locator(".topbar a.active").inner_text() == "Runs"
    # the long pipeline name is cut with an ellipsis, not wrapped or overflowing
    cell = page.locator(f"tr[data-run-id='{c['id']}'] .runs-pipeline .truncate")
    assert cell.evaluate("el => el.scrollWidth > el.clientWidth")
    shot(page, "runs-list")

    page.select_option("#rf-pipeline", "demo")
    page.wait_for_url(re.compile(r"pipeline=demo"))
    page.wait_for_function("() => document.querySelectorAll('tr[data-run-id]').length === 2")
    page.wait_for_function("() => document.querySelector('canvas[data-chart]')?._chart !== undefined")

    # two ticks enable Compare
    compare = page.locator("[data-testid=compare-btn]")
    assert compare.is_disabled()
    page.locator(f"tr[data-run-id='{a['id']}'] input[type=checkbox]").check()
    page.locator(f"tr[data-run-id='{b['id']}'] input[type=checkbox]").check()
    compare.click()
    page.wait_for_url(re.compile(r"/runs/compare\?"))
    assert "item x got worse" in page.locator("[data-testid=regressions]").inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.runs-thumbs img')].length > 0"
        " && [...document.querySelectorAll('.runs-thumbs img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "runs-compare")

    page.goto(f"{url}/runs/{b['id']}")
    alpine_ready(page)
    assert page.locator("[data-testid=stages-table] tbody tr").count() == 3
    shot(page, "runs-detail")

    page.locator("[data-testid=open-report]").click()
    page.wait_for_url(f"{url}/runs/{b['id']}/report")
    assert page.locator("h2", has_text="Stages").count() == 1
    assert page.locator("table").first.locator("tbody tr").count() == 3  # the stage table
    page.wait_for_function(
        "() => { const im = [...document.images]; return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0); }"
    )
    shot(page, "runs-report")

    # one column on a phone: nothing wider than the screen but the table's own scroller
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{url}/runs")
    alpine_ready(page)
    shot(page, "runs-list-mobile")
    assert page.evaluate(WIDEST) <= 390
    page.goto(f"{url}/runs/compare?a={a['id']}&b={b['id']}")
    shot(page, "runs-compare-mobile")
    assert page.evaluate(WIDEST) <= 390

    # a partial validation run: why items failed, and the side-by-sides at a readable size
    page.set_viewport_size({"width": 1280, "height": 800})
    v = _validation_run(studio, root / "runs-validation", broken=2)
    page.goto(f"{url}/runs/{v['id']}")
    alpine_ready(page)
    assert page.locator("[data-testid=run-status]").text_content() == "partial"
    assert "2 of 4 items failed" in page.locator("[data-testid=run-outcome]").inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.runs-image img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    img = page.locator(".runs-image img").first.bounding_box()
    assert img and img["width"] >= 160 and img["height"] >= 160  # not a 32 px speck
    shot(page, "runs-detail-partial")
    page.goto(f"{url}/runs/{v['id']}/report")
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    report_img = page.locator("figure img").first.bounding_box()
    assert report_img and report_img["height"] >= 160
    shot(page, "runs-report-validation")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/runs/{v['id']}")
    alpine_ready(page)
    shot(page, "runs-detail-partial-mobile")
    assert page.evaluate(WIDEST) <= 390
    page.goto(f"{url}/runs/{v['id']}/report")
    shot(page, "runs-report-validation-mobile")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

    # delete, through the confirmation dialog
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{url}/runs/{c['id']}")
    alpine_ready(page)
    page.locator("[data-testid=delete-run]").click()
    page.locator("[data-testid=confirm-delete]").click()
    page.wait_for_url(f"{url}/runs")
    assert page.locator(f"tr[data-run-id='{c['id']}']").count() == 0
    assert page.locator("tr[data-run-id]").count() == 3
