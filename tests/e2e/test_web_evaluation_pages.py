"""The Evaluate and Export pages through an in-process client: empty states, content, fragments,
filters, friendly errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from eval_factories import digits_project, fake_evaluation, make_experiment, run_job, workspace_settings
from vistudio.api.app import create_app
from vistudio.services import evaluation, exports, projects
from vistudio.studio import Studio, open_studio

HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Studio]]:
    root = tmp_path_factory.mktemp("eval-pages")
    studio = open_studio(workspace_settings(root))
    digits_project(studio, root, name="digits")
    projects.create_project(studio, name="bare", task="classification")
    projects.create_project(studio, name="photos", task="library")
    make_experiment(studio, project="digits", name="small", model="mobilenet_v3_small")
    make_experiment(studio, project="digits", name="fresh", model="mobilenet_v3_small", kinds=("last",))
    make_experiment(studio, project="digits", name="busy", model="mobilenet_v3_small", status="running")
    fake_evaluation(studio, project="digits", experiment="small", accuracy=0.7, subsets=("val", "test"))
    yield TestClient(create_app(studio)), studio
    studio.close()


def test_assets_and_empty_states(site: tuple[TestClient, Studio]) -> None:
    c, _ = site
    for path in ("/static/evaluation.js", "/static/evaluation.css"):
        assert c.get(path).status_code == 200
    page = c.get("/projects/bare/evaluate")
    assert page.status_code == 200 and 'id="eval-empty"' in page.text and "/projects/bare/train" in page.text
    assert "<title>bare · Evaluate · vistudio</title>" in page.text
    page = c.get("/projects/bare/export")
    assert 'id="export-empty"' in page.text and "No exports yet" in page.text
    hidden = c.get("/projects/photos/evaluate")  # a photo library has no Evaluate section
    assert hidden.status_code == 404 and 'data-testid="section-missing"' in hidden.text
    assert c.get("/projects/ghost/evaluate").status_code == 404
    assert c.get("/projects/ghost/export").status_code == 404


def test_evaluate_page_shows_metrics_matrix_chart_and_grid(site: tuple[TestClient, Studio]) -> None:
    c, studio = site
    ev = evaluation.get_evaluation(studio, project="digits", experiment="small")
    html = c.get("/projects/digits/evaluate?experiment=small").text
    assert re.search(r'class="eval-exp active" data-experiment="small"', html)
    assert 'data-experiment="busy"' not in html  # still training: not listed
    assert 'data-status="succeeded"' in html
    assert f"{100 * ev['metrics']['accuracy']:.1f}%" in html
    cells = re.findall(r'<td data-true="(\w+)" data-pred="(\w+)"', html)
    assert len(cells) == 9
    chart = json.loads(re.search(r'data-eval-chart="([^"]+)"', html).group(1).replace("&#34;", '"'))  # type: ignore[union-attr]
    assert chart["labels"] == ["0", "1", "2"] and [d["label"] for d in chart["datasets"]] == [
        "precision",
        "recall",
        "F1",
    ]
    assert html.count('class="eval-tile ') == 24 and 'id="grid-total">24<' in html
    assert "/api/v1/samples/" in html and "/thumbnail" in html
    # options: existing checkpoints only
    assert '<option value="best"' in html and '<option value="last"' in html
    fresh = c.get("/projects/digits/evaluate?experiment=fresh").text
    assert '<option value="last"' in fresh and '<option value="best"' not in fresh
    assert "has not been evaluated yet" in fresh and 'data-status="none"' in fresh


def test_grid_filters_sort_pages_and_detail(site: tuple[TestClient, Studio]) -> None:
    c, studio = site
    wrong = evaluation.list_results(studio, project="digits", experiment="small", correct=False)["total"]
    html = c.get("/projects/digits/evaluate?experiment=small&correct=no&sort=confidence").text
    assert html.count('data-correct="false"') == wrong and 'data-correct="true"' not in html
    frag = c.get("/projects/digits/evaluate/small/grid?subset=val&sort=-confidence", headers=HX)
    assert frag.status_code == 200 and frag.text.lstrip().startswith('<section id="eval-grid"')
    assert (
        frag.headers["HX-Push-Url"]
        == "/projects/digits/evaluate?experiment=small&subset=val&sort=-confidence&page=1"
    )
    confs = [float(x) for x in re.findall(r'eval-tile-conf mono">([\d.]+)%', frag.text)]
    assert len(confs) == 12 and confs == sorted(confs, reverse=True)
    cell = c.get("/projects/digits/evaluate/small/grid?true=0&pred=0").text
    assert (
        int(re.search(r'id="grid-total">(\d+)<', cell).group(1))
        == evaluation.get_evaluation(  # type: ignore[union-attr]
            studio, project="digits", experiment="small"
        )["confusion_matrix"][0][0]
    )
    bad = c.get("/projects/digits/evaluate/small/grid?correct=maybe")
    assert bad.status_code == 422 and "correctness filter" in bad.text
    bad = c.get("/projects/digits/evaluate/small/grid?true=seven")
    assert bad.status_code == 422 and "unknown true class" in bad.text
    assert c.get("/projects/digits/evaluate/small/grid?page=99").status_code == 200
    # a bad filter in the page URL shows the message above an unfiltered grid
    page = c.get("/projects/digits/evaluate?experiment=small&pred=nope").text
    assert "unknown predicted class" in page and page.count('class="eval-tile ') == 24
    sid = evaluation.list_results(studio, project="digits", experiment="small")["items"][0]["sample_id"]
    detail = c.get(f"/projects/digits/evaluate/small/results/{sid}").text
    assert 'data-testid="eval-detail"' in detail and detail.count("<li") == 3 and "/original" in detail
    assert c.get("/projects/digits/evaluate/small/results/999999").status_code == 404
    assert c.get(f"/projects/digits/evaluate/small/results/{10**30}").status_code == 422


def test_not_ready_experiments_and_panel_fragment(site: tuple[TestClient, Studio]) -> None:
    c, _ = site
    busy = c.get("/projects/digits/evaluate?experiment=busy").text
    assert 'id="eval-not-ready"' in busy and "is running" in busy
    ghost = c.get("/projects/digits/evaluate?experiment=ghost").text
    assert "experiment &#39;ghost&#39; not found" in ghost
    panel = c.get("/projects/digits/evaluate/small/panel", headers=HX)
    assert panel.status_code == 200 and 'id="confusion"' in panel.text
    assert c.get("/projects/digits/evaluate/busy/panel", headers=HX).status_code == 422
    assert c.get("/projects/digits/evaluate/fresh/grid").status_code == 404


def test_export_page_fragments(site: tuple[TestClient, Studio]) -> None:
    c, studio = site
    page = c.get("/projects/digits/export?experiment=fresh").text
    assert re.search(r'<option value="fresh" selected>', page)
    assert 'id="xf-opset"' in page and 'value="17"' in page
    opts = c.get("/projects/digits/export/checkpoints?experiment=small").text
    assert 'value="best"' in opts and 'value="last"' in opts
    assert "no checkpoint file" in c.get("/projects/digits/export/checkpoints?experiment=busy").text
    started = exports.start_export(
        studio, project="digits", experiment="fresh", checkpoint="last", format="torchscript"
    )
    listed = c.get("/projects/digits/export/list").text
    assert f'data-export-id="{started["export"]["id"]}" data-status="queued"' in listed
    assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
    result = c.get(f"/projects/digits/export/{started['export']['id']}").text
    projects.create_project(studio, name="elsewhere", task="classification")
    theirs = f"/projects/elsewhere/export/{started['export']['id']}"
    # another project's export is reachable through neither its page nor its delete
    assert c.get(theirs).status_code == 404 and c.post(f"{theirs}/delete").status_code == 404
    done = exports.get_export(studio, started["export"]["id"])
    assert done["filename"] == f"fresh-last-torchscript-{done['id']}.pt"
    assert 'id="export-download"' in result and "top-1 agreement" in result and done["filename"] in result
    listed = c.get("/projects/digits/export/list").text
    assert 'data-status="succeeded"' in listed and "100%" in listed
    gone = c.post(f"/projects/digits/export/{started['export']['id']}/delete")
    assert gone.status_code == 200 and "No exports yet" in gone.text
    assert c.post(f"/projects/digits/export/{started['export']['id']}/delete").status_code == 404
    assert not (studio.home / done["path"]).exists()
