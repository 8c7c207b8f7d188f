"""First-hour polish of the pages, in headless Chromium: a job's detail at its own address, the sample
detail's address and arrow keys, the "/" shortcut, the API explorer's way back, and the Evaluate, Compare
and Export pages at 1280×800 with nothing clipped out of reach."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready, checked_page, htmx_settled

from eval_factories import (
    digits_project,
    fake_evaluation,
    make_experiment,
    many_classes_project,
)
from vistudio.services import projects
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NARROW = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 800}


def _expect_param(page: Any, name: str, value: str | None) -> None:
    """Wait until the address's ``name`` parameter is ``value`` (None: absent); a timeout fails."""
    page.wait_for_function("([n, v]) => new URL(location.href).searchParams.get(n) === v", arg=[name, value])


def test_job_detail_at_its_own_address(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect
    from web_factories import wait_for_job

    base, studio, _ = live_server
    pid = projects.create_project(studio, name="jobs-p", task="library")["id"]
    failed = studio.queue.enqueue(
        "import", {"source": "/nowhere/to/be/found", "format": "folder", "mode": "copy"}, project_id=pid
    )
    wait_for_job(studio, failed.id)
    page.goto(f"{base}/jobs?job={failed.id}")
    detail = page.get_by_test_id("job-detail")
    expect(detail).to_be_visible()
    expect(detail.locator("#job-params dd").first).to_be_visible()
    expect(detail.locator("#job-params")).to_contain_text("/nowhere/to/be/found")
    expect(detail.get_by_test_id("job-duration")).to_have_text(re.compile(r"\d+(\.\d)? s"))
    expect(detail.locator("#job-traceback")).to_contain_text("source not found")
    expect(detail.locator("#job-events li[data-kind=status]")).to_have_count(3)  # queued, running, failed
    # the job's lines of the workspace's JSON log: its start, and its failure with the traceback
    job_log = detail.get_by_test_id("job-log")
    expect(job_log.locator("li").first).to_contain_text("job started")
    expect(job_log.locator("li[data-level=ERROR]").first).to_contain_text("source not found")
    job_log.scroll_into_view_if_needed()
    shot(page, "polish-01b-job-log-1280", full_page=False)
    shot(page, "polish-01-job-detail-1280", full_page=False)
    page.set_viewport_size(NARROW)
    shot(page, "polish-02-job-detail-390", full_page=False)
    # nothing in the detail is wider than the dialog
    assert page.evaluate(
        "() => { const d = document.querySelector('#job-dialog'); return d.scrollWidth <= d.clientWidth; }"
    )
    page.set_viewport_size(WIDE)
    # closing drops ?job= from the address; opening another row puts its number there, Back closes it
    detail.get_by_role("button", name="Close detail").click()
    expect(detail).to_be_hidden()
    _expect_param(page, "job", None)
    shot(page, "polish-03-jobs-list-1280")
    expect(page.locator("th", has_text="Duration")).to_be_visible()
    page.get_by_role("button", name=f"Details of job {failed.id}").click()
    expect(page.get_by_test_id("job-detail")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/jobs\?job={failed.id}$"))
    page.go_back()
    expect(page.get_by_test_id("job-detail")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/jobs$"))
    page.set_viewport_size(NARROW)
    shot(page, "polish-04-jobs-list-390")


def test_sample_detail_address_and_arrow_keys(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    digits_project(studio, tmp_path, name="browse", per_class=5)
    page.goto(f"{base}/projects/browse")
    alpine_ready(page)
    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(15)
    ids = [t.get_attribute("data-sample-id") for t in tiles.all()]
    detail = page.get_by_test_id("sample-detail")

    tiles.nth(0).click()
    expect(detail).to_have_attribute("data-detail-id", ids[0])
    _expect_param(page, "sample", ids[0])
    expect(page.get_by_role("button", name="Previous sample")).to_be_disabled()
    page.keyboard.press("ArrowRight")
    expect(detail).to_have_attribute("data-detail-id", ids[1])
    _expect_param(page, "sample", ids[1])
    page.get_by_role("button", name="Next sample").click()
    expect(detail).to_have_attribute("data-detail-id", ids[2])
    page.keyboard.press("ArrowLeft")
    expect(detail).to_have_attribute("data-detail-id", ids[1])
    _expect_param(page, "sample", ids[1])
    page.wait_for_function("() => [...document.querySelectorAll('#detail img')].every(i => i.complete)")
    shot(page, "polish-05-sample-detail-1280", full_page=False)
    # Back returns to the grid (the steps replaced the detail's entry), Forward reopens the sample
    page.go_back()
    expect(page.locator("dialog#detail")).not_to_have_attribute("open", "")
    _expect_param(page, "sample", None)
    page.go_forward()
    expect(detail).to_have_attribute("data-detail-id", ids[1])
    expect(detail).to_be_visible()

    # the address, opened as a link, shows the sample; at the end of the grid "next" is off
    page.goto(f"{base}/projects/browse?sample={ids[-1]}")
    alpine_ready(page)
    expect(detail).to_be_visible()
    expect(detail).to_have_attribute("data-detail-id", ids[-1])
    expect(page.get_by_role("button", name="Next sample")).to_be_disabled()
    page.keyboard.press("ArrowLeft")
    expect(detail).to_have_attribute("data-detail-id", ids[-2])
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    _expect_param(page, "sample", None)
    expect(page).to_have_url(re.compile(r"/projects/browse$"))
    page.set_viewport_size(NARROW)
    tiles.nth(4).click()
    expect(detail).to_have_attribute("data-detail-id", ids[4])
    page.wait_for_function("() => [...document.querySelectorAll('#detail img')].every(i => i.complete)")
    shot(page, "polish-06-sample-detail-390", full_page=False)


def test_slash_focuses_search_but_never_types_into_a_focused_box(
    live_server: tuple[str, Studio, Path], page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    projects.create_project(studio, name="keys", task="classification")
    page.goto(f"{base}/projects/keys")
    alpine_ready(page)
    search = page.locator("#f-q")
    # from nowhere in particular: "/" jumps to the search box and types nothing
    page.locator("h1, h2").first.click()
    page.keyboard.press("/")
    expect(search).to_be_focused()
    expect(search).to_have_value("")
    # pressed again in the (empty) search box: still nothing typed
    page.keyboard.press("/")
    expect(search).to_have_value("")
    # inside the query a "/" is text
    page.keyboard.type("a/b")
    expect(search).to_have_value("a/b")
    # in another box "/" is typed there, once, and the focus stays
    page.get_by_test_id("toggle-import").click()
    folder = page.locator("#fo-path")
    folder.click()
    page.keyboard.type("/data/x")
    expect(folder).to_have_value("/data/x")
    expect(folder).to_be_focused()
    expect(search).to_have_value("a/b")


def test_api_docs_lead_back_to_the_app(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, _, _ = live_server
    page.goto(base + "/projects")
    page.get_by_role("link", name="API docs").click()
    expect(page).to_have_url(re.compile(r"/docs$"))
    expect(page.locator(".swagger-ui .info")).to_be_visible()
    expect(page.locator(".swagger-ui .info a[href='/']")).to_be_visible()  # the link under the title
    shot(page, "polish-07-api-docs", full_page=False)
    page.locator(".vs-docs-bar a[href='/']").click()
    expect(page).to_have_url(re.compile(r"/(projects)?$"))


# Every scroll box either shows all of its content or shows a scrollbar to reach the rest, and no
# element is cut by an ancestor that hides its overflow (text cut with an ellipsis is on purpose).
LAYOUT_PROBLEMS = """(boxes) => {
  const problems = [];
  const hides = (v) => v === 'hidden' || v === 'clip';
  const scrolls = (v) => v === 'auto' || v === 'scroll';
  for (const sel of boxes) {
    for (const box of document.querySelectorAll(sel)) {
      const cs = getComputedStyle(box);
      const bx = parseFloat(cs.borderLeftWidth) + parseFloat(cs.borderRightWidth);
      const by = parseFloat(cs.borderTopWidth) + parseFloat(cs.borderBottomWidth);
      if (box.scrollWidth > box.clientWidth + 1
          && (!scrolls(cs.overflowX) || box.offsetHeight - box.clientHeight - by <= 0)) {
        problems.push(sel + ': ' + (box.scrollWidth - box.clientWidth) + 'px hidden sideways, no scrollbar');
      }
      if (box.scrollHeight > box.clientHeight + 1
          && (!scrolls(cs.overflowY) || box.offsetWidth - box.clientWidth - bx <= 0)) {
        problems.push(sel + ': ' + (box.scrollHeight - box.clientHeight) + 'px hidden below, no scrollbar');
      }
    }
  }
  for (const el of document.querySelectorAll('main *')) {
    const r = el.getBoundingClientRect();
    if (r.width < 2 || r.height < 2 || el.closest('.sr-only, dialog:not([open])')) continue;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (scrolls(cs.overflowX) || scrolls(cs.overflowY)) break;  // reachable: checked above
      if (!hides(cs.overflowX) && !hides(cs.overflowY)) continue;
      if (cs.textOverflow === 'ellipsis') break;  // shortened text, on purpose
      const ar = a.getBoundingClientRect();
      const left = ar.left + a.clientLeft, top = ar.top + a.clientTop;
      const cut = (hides(cs.overflowX) && (r.right > left + a.clientWidth + 1 || r.left < left - 1))
        || (hides(cs.overflowY) && (r.bottom > top + a.clientHeight + 1 || r.top < top - 1));
      if (cut) {
        const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
          + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
        problems.push(name(el) + ' cut by ' + name(a));
        break;
      }
    }
  }
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth) problems.push('the page scrolls sideways');
  return [...new Set(problems)];
}"""
EVAL_BOXES = [".eval-cm-wrap", ".eval-class-table", ".eval-side", "main .table-wrap"]


def _layout_problems(page: Any, boxes: list[str]) -> list[str]:
    return list(page.evaluate(LAYOUT_PROBLEMS, boxes))


def _narrow(page: Any) -> None:
    """The page as a phone opens it (reloaded, so that charts are drawn at that width)."""
    page.set_viewport_size(NARROW)
    page.reload()
    page.wait_for_load_state("load")
    htmx_settled(page)
    page.wait_for_function("() => [...document.querySelectorAll('canvas')].every(c => c.width > 0)")


def _overflow(page: Any, selector: str) -> dict[str, int]:
    """How much of a box's content is out of sight: {"x": px, "y": px}, 0 when all of it shows."""
    return dict(
        page.evaluate(
            "(sel) => { const b = document.querySelector(sel);"
            " return {x: b.scrollWidth - b.clientWidth, y: b.scrollHeight - b.clientHeight}; }",
            selector,
        )
    )


@pytest.fixture(scope="module")
def desktop_browser(browser: Any) -> Iterator[Any]:
    """Chromium drawing its scrollbars as a desktop does: Playwright hides them by default
    (--hide-scrollbars), which is the very way a box can hide content without a visible bar.
    Launched through the running Playwright (a second one in this process is refused)."""
    from web_factories import CHROMIUM

    b = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        ignore_default_args=["--hide-scrollbars"],
    )
    yield b
    b.close()


@pytest.fixture
def desktop_page(desktop_browser: Any) -> Iterator[Any]:
    with checked_page(desktop_browser, WIDE) as p:
        yield p


def _seed_curves(studio: Studio, experiment_id: int, *, seed: int) -> None:
    """Epoch metrics and best values like a finished classification training writes: every column of
    the comparison table filled."""
    from vistudio.db import utcnow
    from vistudio.db.training import EpochMetric, Experiment
    from vistudio.ml.tasks.classification import ClassificationTask

    names = ClassificationTask.metric_names()
    with studio.sessions.begin() as s:
        best: dict[str, float] = {"epoch": 3}
        for epoch in (1, 2, 3):
            for i, name in enumerate(names):
                value = (0.3 + 0.2 * epoch + 0.01 * i + 0.03 * seed) % 1.0
                s.add(
                    EpochMetric(
                        experiment_id=experiment_id,
                        epoch=epoch,
                        step=epoch * 10,
                        name=name,
                        value=value,
                        created_at=utcnow(),
                    )
                )
                best[name] = value
        s.get(Experiment, experiment_id).best_metrics = best


@pytest.mark.parametrize("classes", [10, 60])
def test_evaluate_compare_and_export_fit_at_1280(
    live_server: tuple[str, Studio, Path],
    desktop_page: Any,
    shot: Callable[..., Path],
    tmp_path: Path,
    classes: int,
) -> None:
    from playwright.sync_api import expect

    page = desktop_page
    base, studio, _ = live_server
    name = f"fit{classes}"
    many_classes_project(studio, tmp_path, name=name, classes=classes, per_class=5)
    long_exp = "resnet-with-a-long-experiment-name-for-layout-checks-" + "x" * 30
    exps = [
        make_experiment(studio, project=name, name=n, model="mobilenet_v3_small", seed=i)
        for i, n in enumerate(("mnv3", long_exp, "third"))
    ]
    for i, e in enumerate(exps):
        _seed_curves(studio, e["id"], seed=i)
    fake_evaluation(studio, project=name, experiment="mnv3", accuracy=0.6)

    page.goto(f"{base}/projects/{name}/evaluate?experiment=mnv3")
    alpine_ready(page)
    expect(page.locator("#confusion tbody tr")).to_have_count(classes)
    page.wait_for_function("() => document.querySelector('#per-class-chart').dataset.ready === '1'")
    assert _layout_problems(page, EVAL_BOXES) == []
    matrix, per_class = _overflow(page, ".eval-cm-wrap"), _overflow(page, ".eval-class-table")
    if classes == 10:  # ten classes fit whole: no scrolling at all
        assert matrix == {"x": 0, "y": 0} and per_class == {"x": 0, "y": 0}
    else:  # sixty scroll, and the box says which side holds more
        assert matrix["x"] > 0 and matrix["y"] > 0 and per_class["y"] > 0
        assert page.locator(".eval-cm-wrap").get_attribute("data-more") == "right below"
        assert page.locator(".eval-class-table").get_attribute("data-more") == "below"
        page.locator(".eval-cm-wrap").evaluate("(b) => b.scrollTo(b.scrollWidth, b.scrollHeight)")
        expect(page.locator(".eval-cm-wrap")).not_to_have_attribute("data-more", re.compile("."))
    # the last column of the matrix and the last row of the per-class table can be reached
    last_cell = page.locator("#confusion tbody tr").last.locator("td").last
    last_cell.scroll_into_view_if_needed()
    expect(last_cell).to_be_in_viewport()
    last_row = page.locator("#per-class tbody tr").last
    last_row.scroll_into_view_if_needed()
    expect(last_row).to_be_in_viewport()
    page.evaluate(
        "() => { window.scrollTo(0, 0); document.querySelectorAll('.scroll-box, .table-wrap')"
        ".forEach(b => b.scrollTo(0, 0)); }"
    )
    shot(page, f"polish-10-evaluate-{classes}-classes-1280")
    _narrow(page)
    assert _layout_problems(page, EVAL_BOXES) == []
    shot(
        page, f"polish-11-evaluate-{classes}-classes-390", full_page=False
    )  # full-page captures drop the scrollbar's 15 px
    page.set_viewport_size(WIDE)

    query = "&".join(f"exp={e['name']}" for e in exps)
    page.goto(f"{base}/projects/{name}/train/compare?{query}")
    expect(page.locator("#compare-table tbody tr")).to_have_count(3)
    assert _layout_problems(page, ["main .table-wrap"]) == []
    assert _overflow(page, "main .table-wrap:has(#compare-table)")["x"] == 0  # every column at 1280 px
    shot(page, f"polish-12-compare-{classes}-classes-1280")
    _narrow(page)
    assert _layout_problems(page, ["main .table-wrap"]) == []
    shot(
        page, f"polish-13-compare-{classes}-classes-390", full_page=False
    )  # full-page captures drop the scrollbar's 15 px
    page.set_viewport_size(WIDE)

    if classes == 10:  # one export list is enough: it does not depend on the classes
        for exp_name in ("mnv3", long_exp):
            page.goto(f"{base}/projects/{name}/export?experiment={exp_name}")
            alpine_ready(page)
            page.locator("#export-start").click()
            expect(page.locator("#export-status")).to_have_attribute(
                "data-status", "succeeded", timeout=60_000
            )
        expect(page.locator("#export-list tr[data-export-id]")).to_have_count(2)
        assert _layout_problems(page, ["main .table-wrap"]) == []
        assert _overflow(page, "#export-list .table-wrap")["x"] == 0  # the whole row shows, trash icon too
        expect(page.locator("#export-list button.export-delete").first).to_be_in_viewport(ratio=1)
        shot(page, "polish-14-export-list-1280")
        _narrow(page)
        assert _layout_problems(page, ["main .table-wrap"]) == []
        shot(
            page, "polish-15-export-list-390", full_page=False
        )  # full-page captures drop the scrollbar's 15 px
