"""Curation pages: Likely label errors (search, accept with the keyboard, reject, undo), Dataset
versions (create, a name taken, compare) and the Evaluate grid's "Tag these images" and "Open in
editor". Pages rendered by TestClient (empty states, escaping, 404s), then a walk in headless
Chromium against the real app with its embedded worker."""

from __future__ import annotations

import html as htmllib
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from web_factories import alpine_ready, htmx_settled, wait_for_job, web_settings

from eval_factories import LONG_CLASS, digits_project, fake_evaluation, make_experiment
from factories import make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.db.label_issues import LabelIssue
from vistudio.services import edits, evaluation, projects, samples
from vistudio.services.exports import resolve
from vistudio.studio import Studio, open_studio

SHOTS = Path("/tmp/shots")
ODD = '<b>"odd"</b>'
ODD_ESCAPED = "&lt;b&gt;&#34;odd&#34;&lt;/b&gt;"
WEB = {"x-vistudio-client": "web"}


def _snap(page: Any, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"curation-{name}.png"), full_page=full_page)


def _issues(studio: Studio, project: str, experiment: str, rows: list[dict[str, Any]]) -> None:
    """Label-error results stored as the search stores them (for pages that need some without
    running a model)."""
    with studio.sessions() as s:
        _, exp = resolve(s, project, experiment)
        exp_id = exp.id
    with studio.sessions.begin() as s:
        s.execute(insert(LabelIssue), [{"experiment_id": exp_id, "decision": None, **r} for r in rows])


def _import(studio: Studio, project: str, src: Path, fmt: str) -> None:
    """Import and wait: the live server's worker may claim the job before this process does."""
    job = run_import(studio, project, src, fmt=fmt)
    assert wait_for_job(studio, job["id"], timeout=120)["status"] == "succeeded"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Studio]]:
    """A digits project (0, 1, 2 × 8) with one untrained experiment, a detection project, and an
    empty classification project; one app in this process."""
    root = tmp_path_factory.mktemp("curation-pages")
    studio = open_studio(web_settings(root))
    digits_project(studio, root, per_class=8)
    make_experiment(studio, project="digits", name="exp1")
    projects.create_project(studio, name="boxes", task="detection")
    projects.create_project(studio, name="empty", task="classification")
    with TestClient(create_app(studio)) as client:
        yield client, studio
    studio.close()


def test_label_errors_page_states(pages: tuple[TestClient, Studio]) -> None:
    client, _ = pages
    # a project with no finished experiment: say how to get one
    r = client.get("/projects/empty/label-errors")
    assert r.status_code == 200 and 'id="le-no-experiment"' in r.text and "No finished experiment" in r.text
    # a detection project: explained, no search offered
    r = client.get("/projects/boxes/label-errors")
    assert r.status_code == 200 and 'id="le-unsupported"' in r.text and 'id="le-search"' not in r.text
    assert "one class label per image" in r.text
    # unknown experiment or project: 404 pages
    r = client.get("/projects/digits/label-errors", params={"experiment": "nope"})
    assert r.status_code == 404 and "nope" in r.text
    assert client.get("/projects/nope/label-errors").status_code == 404
    assert client.get("/projects/digits/label-errors/body", params={"experiment": "nope"}).status_code == 404
    # no search yet: the newest experiment is chosen and the button says Search
    r = client.get("/projects/digits/label-errors")
    assert r.status_code == 200
    assert 'data-state="never"' in r.text and "No search yet with exp1" in r.text
    assert re.search(r'id="le-search"[^>]*>.*?<span[^>]*>Search</span>', r.text, re.S)
    assert '<option value="exp1" selected>' in r.text


def test_label_errors_list_escaping_decided_and_pages(pages: tuple[TestClient, Studio]) -> None:
    client, studio = pages
    items = samples.list_samples(studio, project="digits", limit=100)["items"]
    assert len(items) == 24
    make_experiment(studio, project="digits", name="exp-odd")
    rows = [
        {
            "sample_id": it["id"],
            "given": ODD if i % 2 else it["labels"][0],
            "suggested": LONG_CLASS if i % 2 else ODD,
            "score": 1.0 - i / 100,
            "flagged": i < 20,
        }
        for i, it in enumerate(items)
    ]
    # the one accepted below: a real label to a real class
    other = next(c for c in ("0", "1", "2") if c != items[1]["labels"][0])
    rows[1].update(given=items[1]["labels"][0], suggested=other)
    _issues(studio, "digits", "exp-odd", rows)
    r = client.get("/projects/digits/label-errors", params={"experiment": "exp-odd"})
    assert r.status_code == 200
    assert ODD not in r.text and ODD_ESCAPED in r.text
    assert r.text.count('class="cur-row le-row') == 20  # the flagged ones (fewer than a page)
    assert 'id="le-summary"' in r.text and 'data-scored="24"' in r.text and 'data-flagged="20"' in r.text
    ids = re.findall(r'class="cur-row le-row[^"]*" data-sample-id="(\d+)"', r.text)
    assert ids == [str(it["id"]) for it in items[:20]]  # most likely wrong first
    # each row links to its sample's detail in the Dataset
    assert f'href="/projects/digits?sample={items[0]["id"]}"' in r.text
    # decide two: the to-do list loses them, "Show decided" lists them with their decision
    api = "/api/v1/projects/digits/experiments/exp-odd/label-errors"
    assert client.post(f"{api}/{items[0]['id']}", json={"accept": False}, headers=WEB).status_code == 200
    r = client.post(f"{api}/{items[1]['id']}", json={"accept": True}, headers=WEB)
    assert r.status_code == 200 and r.json()["decision"] == "accepted"
    assert samples.get_sample(studio, items[1]["id"])["labels"] == [other]
    body = client.get("/projects/digits/label-errors/body", params={"experiment": "exp-odd"})
    assert body.status_code == 200 and body.text.count('class="cur-row le-row') == 18
    assert 'data-count="decided">2<' in body.text and "Show decided (<span" in body.text
    shown = client.get("/projects/digits/label-errors/body", params={"experiment": "exp-odd", "decided": "1"})
    assert shown.text.count('class="cur-row le-row') == 20 and "Hide decided" in shown.text
    assert 'data-decision="accepted"' in shown.text and 'data-decision="rejected"' in shown.text
    # more rows from an offset, with the list's total
    more = client.get("/projects/digits/label-errors/rows", params={"experiment": "exp-odd", "offset": 15})
    assert more.status_code == 200 and more.headers["x-total"] == "18"
    assert more.text.count('class="cur-row le-row') == 3
    edits.undo(studio, project="digits")  # the accept's relabel undone: its suggestion is open again
    body = client.get("/projects/digits/label-errors/body", params={"experiment": "exp-odd"})
    assert body.text.count('class="cur-row le-row') == 19
    # every flagged image decided: said so; no flagged image at all: "no likely label errors"
    for it in items[1:20]:
        client.post(f"{api}/{it['id']}", json={"accept": False}, headers=WEB)
    r = client.get("/projects/digits/label-errors", params={"experiment": "exp-odd"})
    assert 'data-state="done"' in r.text and "All 20 flagged images decided." in r.text
    make_experiment(studio, project="digits", name="exp-clean")
    _issues(studio, "digits", "exp-clean", [{**row, "flagged": False} for row in rows])
    r = client.get("/projects/digits/label-errors", params={"experiment": "exp-clean"})
    assert 'data-state="clean"' in r.text and "No likely label errors among 24 images." in r.text


def test_versions_page(pages: tuple[TestClient, Studio]) -> None:
    client, studio = pages
    # no version yet
    r = client.get("/projects/empty/versions")
    assert r.status_code == 200 and 'id="versions-empty"' in r.text
    assert "No versions yet — one is made automatically when an experiment starts." in r.text
    assert 'id="version-compare"' not in r.text  # two are needed
    assert client.get("/projects/nope/versions").status_code == 404
    # the experiments made a version automatically; make one, then a class with an odd name
    r = client.get("/projects/digits/versions")
    assert r.status_code == 200 and 'data-testid="edited-since"' in r.text  # labels edited since
    assert "auto" in r.text
    r = client.post("/projects/digits/versions", data={"version_name": "before"})
    assert r.status_code == 200 and 'id="version-made"' in r.text and "<strong>before</strong>" in r.text
    r = client.post("/projects/digits/versions", data={"version_name": "before"})
    assert r.status_code == 409 and "already exists" in r.text and 'value="before"' in r.text
    # the odd class becomes the largest (9 images): the list shows it
    some = samples.list_samples(studio, project="digits", limit=9)["items"]
    first = some[0]
    edits.edit_labels(
        studio,
        project="digits",
        selection={"sample_ids": [x["id"] for x in some]},
        set_to=[ODD],
        create_classes=True,
    )
    r = client.post("/projects/digits/versions", data={"version_name": ""})
    assert r.status_code == 200 and ODD not in r.text and ODD_ESCAPED in r.text
    names = re.findall(r'class="ver-row" data-version="([^"]+)"', r.text)
    assert names[1] == "before" and re.fullmatch(r"v\d+", names[0])
    # compare: the fragment, and the whole page at its own address
    diff = client.get("/projects/digits/versions/diff", params={"a": "before", "b": names[0]})
    assert diff.status_code == 200
    assert re.search(r'data-stat="relabelled"><span class="stat-n">9<', diff.text)
    assert ODD not in diff.text and f'data-class="{ODD_ESCAPED}"' in diff.text
    assert f'href="/projects/digits?sample={first["id"]}"' in diff.text
    page = client.get("/projects/digits/versions", params={"a": "before", "b": names[0]})
    assert 'data-testid="version-diff"' in page.text and '<option value="before" selected>' in page.text
    same = client.get("/projects/digits/versions/diff", params={"a": "before", "b": "before"})
    assert "same version" in same.text and "No differences" in same.text
    assert client.get("/projects/digits/versions/diff", params={"a": "before", "b": "zz"}).status_code == 404
    edits.undo(studio, project="digits")


def test_links_from_evaluate_train_and_split(pages: tuple[TestClient, Studio]) -> None:
    client, studio = pages
    fake_evaluation(studio, project="digits", experiment="exp1", accuracy=0.5)
    r = client.get("/projects/digits/evaluate", params={"experiment": "exp1", "correct": "no"})
    assert r.status_code == 200
    assert 'href="/projects/digits/label-errors?experiment=exp1"' in r.text
    assert 'id="eval-tag"' in r.text and "Tag these" in r.text
    wrong = evaluation.list_results(studio, project="digits", experiment="exp1", correct=False, limit=500)
    assert f"Tag these <strong>{wrong['total']}</strong>" in r.text
    # the tag form carries the grid's filters, as the tag API takes them
    spec = htmllib.unescape(re.search(r'x-data="evalTagger\(([^"]+)\)"', r.text).group(1))
    assert '"filters": {"correct": false, "pred": null, "subset": null, "true": null}' in spec
    tile = wrong["items"][0]["sample_id"]
    assert f'class="eval-open" href="/projects/digits?sample={tile}"' in r.text
    grid = client.get("/projects/digits/evaluate/exp1/grid", params={"true": "1", "subset": "test"})
    spec = htmllib.unescape(re.search(r'x-data="evalTagger\(([^"]+)\)"', grid.text).group(1))
    assert '"filters": {"correct": null, "pred": null, "subset": "test", "true": "1"}' in spec
    # detection has no label-error search
    assert "label-errors" not in client.get("/projects/boxes/evaluate").text
    # the Train detail links its version and the search; the Split page links the versions
    train = client.get("/projects/digits/train", params={"experiment": "exp1"})
    assert 'href="/projects/digits/versions"' in train.text and 'id="label-errors-experiment"' in train.text
    assert 'id="versions-link"' in client.get("/projects/digits/split").text


@pytest.mark.browser
def test_curation_walk(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    digits_project(studio, root, classes=(0, 1, 2, 3, 4), per_class=24, name="digits")
    items = samples.list_samples(studio, project="digits", limit=500)["items"]
    rng = random.Random(3)
    for item in rng.sample(items, len(items) // 10):
        other = rng.choice([c for c in "01234" if c != item["labels"][0]])
        edits.edit_labels(studio, project="digits", selection={"sample_ids": [item["id"]]}, set_to=[other])
    make_experiment(studio, project="digits", name="exp1", train_steps=6)

    # the label-error page before a search, then the search run from the page
    page.goto(base + "/projects/digits/label-errors?experiment=exp1")
    alpine_ready(page)
    expect(page.locator("#le-empty")).to_have_attribute("data-state", "never")
    _snap(page, "label-errors-empty")
    page.locator("#le-search").click()
    expect(page.locator("#le-status")).to_be_visible()
    rows = page.locator("#le-list .le-row")
    expect(rows.first).to_be_visible(timeout=120_000)
    expect(page.locator("#le-search")).to_contain_text("Search again")
    expect(page.locator("#le-progress")).to_be_hidden()  # the summary says how it went
    page.wait_for_function(
        "() => [...document.querySelectorAll('.cur-img')].slice(0, 4).every(i => i.complete && i.naturalWidth > 0)"
    )
    _snap(page, "label-errors-list")
    todo = int(page.get_by_test_id("le-total").inner_text())
    assert todo == rows.count() or todo > rows.count()

    # accept the first with the keyboard: relabelled to the suggestion, the row leaves
    first = rows.nth(0)
    expect(first).to_have_class(re.compile(r"\bis-current\b"))
    sid, given, suggested = (
        first.get_attribute(k) for k in ("data-sample-id", "data-given", "data-suggested")
    )
    page.keyboard.press("a")
    message = page.locator("#le-message")
    expect(message).to_contain_text(f"to “{suggested}”")
    expect(page.locator(f".le-row[data-sample-id='{sid}']")).to_have_count(0)
    expect(page.get_by_test_id("le-total")).to_have_text(str(todo - 1))
    assert httpx.get(f"{base}/api/v1/samples/{sid}").json()["sample"]["labels"] == [suggested]
    _snap(page, "label-errors-accepted")
    # reject the next one (now the current row): its label stays
    second = page.locator("#le-list .le-row.is-current")
    sid2, given2 = second.get_attribute("data-sample-id"), second.get_attribute("data-given")
    assert sid2 != sid
    page.keyboard.press("j")
    page.keyboard.press("k")
    page.keyboard.press("r")
    expect(message).to_contain_text(f"Kept “{given2}”")
    expect(page.locator(f".le-row[data-sample-id='{sid2}']")).to_have_count(0)
    assert httpx.get(f"{base}/api/v1/samples/{sid2}").json()["sample"]["labels"] == [given2]
    # u takes the last accept back through the project's undo
    page.keyboard.press("u")
    expect(message).to_contain_text(f"is labelled “{given}” again")
    assert httpx.get(f"{base}/api/v1/samples/{sid}").json()["sample"]["labels"] == [given]
    # the decided ones are listed on demand
    page.locator("#le-toggle").click()
    expect(page.locator("#le-toggle")).to_have_text("Hide decided")
    expect(page.locator(f".le-row[data-sample-id='{sid}'] [data-decide='accept']")).to_be_visible()  # open again
    expect(page.locator(f".le-row[data-sample-id='{sid2}'] .le-decision")).to_have_text("kept")
    expect(page).to_have_url(re.compile(r"decided=1"))
    _snap(page, "label-errors-decided")

    # versions: make one, relabel an image, make another, compare
    page.goto(base + "/projects/digits/versions")
    alpine_ready(page)
    expect(page.locator("#versions .ver-row")).to_have_count(1)  # made when exp1 started
    _snap(page, "versions-one")
    page.locator("#version-name").fill("before-fix")
    page.locator("#version-create-go").click()
    expect(page.locator("#version-made")).to_contain_text("before-fix")
    target = items[0]
    new_label = "4" if target["labels"] != ["4"] else "3"
    r = httpx.post(
        f"{base}/api/v1/projects/digits/labels",
        json={"sample_ids": [target["id"]], "set": [new_label]},
        headers=WEB,
    )
    assert r.status_code == 200, r.text
    htmx_settled(page)
    page.locator("#version-name").fill("after-fix")
    page.locator("#version-create-go").click()
    expect(page.locator("#version-made")).to_contain_text("after-fix")
    expect(page.locator("#versions .ver-row")).to_have_count(3)
    # a name taken: the message, the name kept in the box
    htmx_settled(page)
    page.locator("#version-name").fill("before-fix")
    page.locator("#version-create-go").click()
    expect(page.locator("#version-error")).to_contain_text("already exists")
    expect(page.locator("#version-name")).to_have_value("before-fix")
    expect(page.locator("#version-a")).to_have_value("before-fix")
    expect(page.locator("#version-b")).to_have_value("after-fix")
    htmx_settled(page)
    page.locator("#version-compare-go").click()
    diff = page.get_by_test_id("version-diff")
    expect(diff.locator(".stat[data-stat=relabelled] .stat-n")).to_have_text("1")
    expect(diff.locator(".stat[data-stat=added] .stat-n")).to_have_text("0")
    expect(diff.locator(f"a.ver-thumb[data-sample-id='{target['id']}']")).to_have_count(1)
    expect(diff.locator(f"#version-classes tr[data-class='{new_label}'] td").first).to_have_text("+1")
    expect(page).to_have_url(re.compile(r"/versions\?a=before-fix&b=after-fix"))
    page.wait_for_function("() => [...document.querySelectorAll('.ver-thumb img')].every(i => i.complete)")
    _snap(page, "versions-diff", full_page=True)

    # Evaluate: tag every wrong result (all pages), then the Dataset's tag filter shows as many
    fake_evaluation(studio, project="digits", experiment="exp1", accuracy=0.6)
    mistakes = evaluation.list_results(studio, project="digits", experiment="exp1", correct=False, limit=1)[
        "total"
    ]
    assert mistakes > 0
    page.goto(base + "/projects/digits/evaluate?experiment=exp1")
    alpine_ready(page)
    page.locator("#gf-correct").select_option("no")
    expect(page.locator("#grid-total")).to_have_text(str(mistakes))
    htmx_settled(page)
    alpine_ready(page)
    expect(page.locator("#eval-tag-name")).to_have_value("review")
    page.locator("#eval-tag-go").click()
    tag_message = page.locator("#eval-tag-message")
    expect(tag_message).to_contain_text(f"Tagged {mistakes} images “review”.")
    expect(page.locator("#eval-tag-error")).to_have_count(0)
    page.locator(".eval-tile-wrap").first.hover()
    expect(page.locator(".eval-open").first).to_be_visible()
    _snap(page, "evaluate-tagged")
    # an odd tag is shown as text, and Undo takes it off
    page.locator("#eval-tag-name").fill(ODD)
    page.locator("#eval-tag-go").click()
    expect(tag_message).to_contain_text(f"“{ODD}”")
    assert page.locator("#eval-tag-message b").count() == 0
    page.locator("#eval-tag-undo").click()
    expect(tag_message).to_contain_text("Undone")
    r = httpx.get(f"{base}/api/v1/samples", params={"project": "digits", "tag": ODD, "limit": 1})
    assert r.json()["total"] == 0
    # "Show them": the Dataset filtered by the tag, as many as the mistakes
    page.locator("#eval-tag-name").fill("review")
    page.locator("#eval-tag-go").click()
    expect(tag_message).to_contain_text("already")
    page.locator("#eval-tag-show").click()
    expect(page).to_have_url(re.compile(r"/projects/digits\?tag=review$"))
    expect(page.get_by_test_id("grid-total")).to_have_text(str(mistakes))
    # "Open in editor" from a result opens the sample's detail
    page.goto(base + "/projects/digits/evaluate?experiment=exp1&correct=no")
    alpine_ready(page)
    link = page.locator(".eval-open").first
    href = link.get_attribute("href")
    assert href and re.fullmatch(r"/projects/digits\?sample=\d+", href)
    link.focus()
    link.press("Enter")
    expect(page).to_have_url(re.compile(re.escape(href) + "$"))
    expect(page.locator("dialog[open]")).to_have_count(1)


@pytest.mark.browser
def test_long_and_odd_names(
    live_server: tuple[str, Studio, Path], page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long sample and class names, and a class named like HTML, on the label-error and versions
    pages at 1280×800: nothing spills out of its box; the list in pages of five (Load more)."""
    from playwright.sync_api import expect

    from vistudio.web.pages import curation

    monkeypatch.setattr(curation, "PAGE", 5)  # the live server runs in this process

    base, studio, root = live_server
    long_file = "a-photo-with-a-rather-long-file-name-from-a-camera-roll-export-" + "x" * 40
    src = make_class_folders(root / "odd-src", {"cat": 6, LONG_CLASS: 6})
    for i, path in enumerate(sorted((src / "cat").iterdir())):
        path.rename(path.with_name(f"{long_file}-{i}.png"))
    projects.create_project(studio, name="odd", task="classification")
    _import(studio, "odd", src, "folder")
    from vistudio.services import splits

    splits.create_split(studio, project="odd", name="default", ratios=(0.6, 0.2, 0.2), seed=1)
    odd_items = samples.list_samples(studio, project="odd", limit=100)["items"]
    edits.edit_labels(
        studio,
        project="odd",
        selection={"sample_ids": [odd_items[0]["id"]]},
        set_to=[ODD],
        create_classes=True,
    )
    make_experiment(studio, project="odd", name="exp-" + "long" * 12)
    rows = [
        {
            "sample_id": it["id"],
            "given": LONG_CLASS if i % 2 else ODD,
            "suggested": ODD if i % 2 else LONG_CLASS,
            "score": 0.99 - i / 50,
            "flagged": True,
        }
        for i, it in enumerate(odd_items)
    ]
    _issues(studio, "odd", "exp-" + "long" * 12, rows)
    page.goto(base + "/projects/odd/label-errors")
    alpine_ready(page)
    odd_rows = page.locator("#le-list .le-row")
    expect(odd_rows).to_have_count(5)
    expect(page.locator("#le-more")).to_contain_text("(7 more)")
    # a decision, then Load more: the next rows follow on, none twice, none skipped
    page.keyboard.press("r")
    expect(odd_rows).to_have_count(4)
    page.locator("#le-more").click()
    expect(odd_rows).to_have_count(9)
    page.locator("#le-more").click()
    expect(odd_rows).to_have_count(11)
    expect(page.locator("#le-more")).to_be_hidden()
    shown = odd_rows.evaluate_all("els => els.map(e => +e.dataset.sampleId)")
    assert len(set(shown)) == 11 and set(shown) < {it["id"] for it in odd_items}
    assert page.locator("#le-list b").count() == 0
    labels = page.locator("#le-list .cur-label").all_inner_texts()
    assert ODD in labels and labels.count(ODD) == 11  # each row has it, as text
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    _snap(page, "label-errors-long-names")
    page.goto(base + "/projects/odd/versions")
    page.locator("#version-name").fill("a long version name " + "y" * 60)
    page.locator("#version-create-go").click()
    expect(page.locator("#version-made")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    _snap(page, "versions-long-names")
    # a phone: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    _snap(page, "versions-phone")
    page.goto(base + "/projects/odd/label-errors")
    alpine_ready(page)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    _snap(page, "label-errors-phone")


@pytest.mark.browser
def test_tag_the_images_of_a_box_evaluation(live_server: tuple[str, Studio, Path], page: Any) -> None:
    """A detector's results grid: "Tag these images" with the outcome filter tags every image with
    a missed object, the number the grid counts."""
    from playwright.sync_api import expect

    from detection_eval_factories import make_detection_experiment
    from detection_factories import write_coco
    from vistudio.services import splits

    base, studio, root = live_server
    projects.create_project(studio, name="boxes", task="detection")
    _import(studio, "boxes", write_coco(root / "boxes-src", 20, size=64, seed=2, masks=False), "coco")
    splits.create_split(studio, project="boxes", name="s1", ratios=(0.5, 0.25, 0.25), seed=7)
    make_detection_experiment(studio, project="boxes", name="small", task="detection", train_steps=1)
    started = evaluation.start_evaluation(
        studio, project="boxes", experiment="small", subsets="val,test", batch_size=4, device="cpu"
    )
    assert wait_for_job(studio, started["job"]["id"], timeout=120)["status"] == "succeeded"
    missed = evaluation.list_results(studio, project="boxes", experiment="small", outcome="fn", limit=1)[
        "total"
    ]
    assert missed > 0  # a detector trained for one step misses objects

    page.goto(base + "/projects/boxes/evaluate?experiment=small")
    alpine_ready(page)
    assert page.locator("#eval-label-errors").count() == 0  # no label-error search for boxes
    page.locator("#gf-outcome").select_option("fn")
    expect(page.locator("#grid-total")).to_have_text(str(missed))
    htmx_settled(page)
    alpine_ready(page)
    page.locator("#eval-tag-name").fill("missed")
    page.locator("#eval-tag-go").click()
    expect(page.locator("#eval-tag-message")).to_contain_text(f"Tagged {missed} image")
    r = httpx.get(f"{base}/api/v1/samples", params={"project": "boxes", "tag": "missed", "limit": 1})
    assert r.json()["total"] == missed
    page.locator(".eval-tile-wrap").first.hover()
    expect(page.locator(".eval-open").first).to_be_visible()
    _snap(page, "evaluate-boxes-tagged")
