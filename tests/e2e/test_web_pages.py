"""Web pages through an in-process client: content, empty states, friendly errors and sign-in."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_factories import make_shapes_zip, make_yolo_obb, web_settings

from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.services import ingest, projects, splits
from vistudio.studio import Studio, open_studio
from vistudio.web.pages.auth import safe_next

HX = {"HX-Request": "true"}


@pytest.fixture
def client(web_studio: Studio) -> TestClient:
    return TestClient(create_app(web_studio))


def _import(studio: Studio, project: str, source: Path, fmt: str | None = None) -> dict:
    job = ingest.start_import(studio, project=project, source=source, fmt=fmt)
    done = Worker(studio).run_to_end(job["id"])
    assert done is not None and done.status == "succeeded", done and done.error
    return job


@pytest.fixture
def shapes(web_studio: Studio, tmp_path: Path) -> str:
    projects.create_project(web_studio, name="shapes", task="classification")
    _import(web_studio, "shapes", make_shapes_zip(tmp_path / "shapes.zip", per_class=4))
    return "shapes"


def test_static_assets_are_vendored(client: TestClient) -> None:
    for path in (
        "/static/vendor/htmx.min.js",
        "/static/vendor/alpine.min.js",
        "/static/vendor/chart.umd.min.js",
        "/static/app.css",
        "/static/app.js",
        "/static/favicon.svg",
    ):
        assert client.get(path).status_code == 200, path
    page = client.get("/").text
    assert "cdn" not in page.lower() and "https://" not in page


def test_projects_page_empty_state(client: TestClient) -> None:
    for url in ("/", "/projects"):
        r = client.get(url)
        assert r.status_code == 200
        assert "<title>Projects · vistudio</title>" in r.text
        assert "No projects yet" in r.text
        assert 'href="/jobs"' in r.text
        # the task select is filled from the task registry
        assert '<option value="classification" data-can-train="yes">Classification</option>' in r.text


def test_create_rename_delete_project(client: TestClient, web_studio: Studio) -> None:
    r = client.post("/projects", data={"name": "cats", "task": "detection"}, headers=HX)
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/projects/cats"  # the new project opens
    listed = client.get("/projects").text
    assert 'data-project="cats"' in listed and "badge-orange" in listed

    dup = client.post("/projects", data={"name": "cats", "task": "detection"}, headers=HX)
    assert dup.status_code == 409
    assert "already exists" in dup.text and "alert-error" in dup.text

    bad = client.post("/projects", data={"name": "../etc", "task": "detection"}, headers=HX)
    assert bad.status_code == 422 and "project name" in bad.text
    assert client.post("/projects", data={"name": "x", "task": "juggling"}, headers=HX).status_code == 422
    assert "give the project a name" in client.post("/projects", data={"name": " ", "task": "library"}).text

    r = client.post("/projects/cats/rename", data={"new_name": "felines"}, headers=HX)
    assert r.status_code == 200 and 'data-project="felines"' in r.text
    assert client.post("/projects/nope/rename", data={"new_name": "x"}).status_code == 404

    wrong = client.post("/projects/felines/delete", data={"confirm": "cats"}, headers=HX)
    assert wrong.status_code == 422 and "type the project name" in wrong.text
    assert projects.get_project(web_studio, "felines")
    r = client.post("/projects/felines/delete", data={"confirm": "felines"}, headers=HX)
    assert r.status_code == 200 and "No projects yet" in r.text


def test_dataset_page_empty_and_unknown(client: TestClient, web_studio: Studio) -> None:
    projects.create_project(web_studio, name="empty one", task="library")
    r = client.get("/projects/empty%20one")
    assert r.status_code == 200
    assert "<title>empty one · Dataset · vistudio</title>" in r.text
    assert "No images yet" in r.text
    assert 'action="/api/v1/imports/upload"' not in r.text  # the upload goes through fetch, not a page post
    missing = client.get("/projects/does-not-exist")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "project &#39;does-not-exist&#39; not found" in missing.text
    assert client.get("/projects/does-not-exist/split").status_code == 404


def test_dataset_grid_filters_and_pages(client: TestClient, shapes: str) -> None:
    r = client.get("/projects/shapes")
    assert r.status_code == 200
    assert r.text.count('data-testid="tile"') == 12
    assert 'loading="lazy"' in r.text
    assert '<option value="circle" >circle (4)</option>' in r.text or "circle (4)" in r.text
    # the filter form asks for the page URL with htmx and gets only the grid
    frag = client.get("/projects/shapes?label=square&sort=bytes&order=desc", headers=HX)
    assert frag.status_code == 200
    assert "<html" not in frag.text
    assert frag.text.count('data-testid="tile"') == 4
    assert "match the filters" in frag.text
    assert client.get("/projects/shapes?q=zzz", headers=HX).text.count('data-testid="tile"') == 0
    bad = client.get("/projects/shapes?taken_from=yesterday", headers=HX)
    assert bad.status_code == 422 and "from date must be a date" in bad.text
    assert client.get("/projects/shapes?sort=colour", headers=HX).status_code == 422
    full = client.get("/projects/shapes?taken_from=2024-02-30")
    assert full.status_code == 200 and "must be a date" in full.text
    nosplit = client.get("/projects/shapes?subset=default:train", headers=HX)
    assert nosplit.status_code == 404 and "split" in nosplit.text
    assert '<section id="grid"' in nosplit.text  # the next filter change still finds the grid
    page2 = client.get("/projects/shapes/samples?offset=10")
    assert page2.status_code == 200 and page2.text.count('data-testid="tile"') == 2
    assert client.get("/projects/shapes/samples?offset=-1").status_code == 422


def test_pagination_links_to_the_next_sixty(client: TestClient, web_studio: Studio, tmp_path: Path) -> None:
    from web_factories import make_tiny_folder

    projects.create_project(web_studio, name="many", task="library")
    _import(web_studio, "many", make_tiny_folder(tmp_path / "many", count=130))
    first = client.get("/projects/many?q=tiny")
    assert first.text.count('data-testid="tile"') == 60
    next_url = re.search(r'hx-get="(/projects/many/samples\?[^"]+)"', first.text)
    assert next_url and "offset=60" in next_url.group(1) and "q=tiny" in next_url.group(1)
    second = client.get(next_url.group(1).replace("&amp;", "&"))
    assert second.text.count('data-testid="tile"') == 60 and "offset=120" in second.text
    third = client.get("/projects/many/samples?offset=120&q=tiny")
    assert third.text.count('data-testid="tile"') == 10 and "load-more" not in third.text


def test_sample_detail_draws_annotations(client: TestClient, web_studio: Studio, tmp_path: Path) -> None:
    projects.create_project(web_studio, name="boats", task="oriented_detection")
    _import(web_studio, "boats", make_yolo_obb(tmp_path / "yolo"), fmt="yolo")
    grid = client.get("/projects/boats").text
    sid = re.search(r'data-sample-id="(\d+)"', grid)
    assert sid
    r = client.get(f"/projects/boats/samples/{sid.group(1)}", headers=HX)
    assert r.status_code == 200
    # drawn in the browser (overlay.js) from the annotations the canvas carries
    overlay = re.search(r'data-overlay="([^"]+)"', r.text)
    assert overlay
    drawn = json.loads(html.unescape(overlay.group(1)))
    assert (drawn["w"], drawn["h"]) == (160, 120)
    assert sorted(a["kind"] for a in drawn["a"]) == ["box", "polygon", "rotated_box"]
    assert "160 × 120 px" in r.text and "/original" in r.text
    assert client.get("/projects/boats/samples/999999").status_code == 404
    projects.create_project(web_studio, name="other", task="library")
    assert client.get(f"/projects/other/samples/{sid.group(1)}").status_code == 404


def test_import_report_fragment(client: TestClient, web_studio: Studio, tmp_path: Path) -> None:
    projects.create_project(web_studio, name="shapes", task="classification")
    archive = make_shapes_zip(tmp_path / "shapes.zip", per_class=2)
    broken = tmp_path / "src2" / "circle"
    broken.mkdir(parents=True)
    (broken / "bad.png").write_bytes(b"not an image")
    job = _import(web_studio, "shapes", archive)
    r = client.get(f"/projects/shapes/imports/{job['id']}")
    assert r.status_code == 200
    assert 'data-testid="report-imported">6<' in r.text
    job2 = _import(web_studio, "shapes", tmp_path / "src2")
    r2 = client.get(f"/projects/shapes/imports/{job2['id']}").text
    assert 'data-testid="report-failed">1<' in r2 and "bad.png" in r2
    assert client.get("/projects/shapes/imports/9999").status_code == 404


def test_split_page_preview_save_and_conflict(client: TestClient, web_studio: Studio, shapes: str) -> None:
    r = client.get("/projects/shapes/split")
    assert r.status_code == 200
    assert "No saved splits yet" in r.text and "chart.umd.min.js" in r.text
    form = {"ratios": "0.50,0.25,0.25", "seed": "7", "split_name": "half"}
    prev = client.post("/projects/shapes/split/preview", data=form, headers=HX)
    assert prev.status_code == 200
    assert "data-chart=" in prev.text and "not saved" in prev.text
    assert re.search(r'data-testid="total-train">6<', prev.text)
    assert splits.list_splits(web_studio, project="shapes")["total"] == 0

    bad = client.post("/projects/shapes/split/preview", data={**form, "ratios": "0.9,0.3,0.1"}, headers=HX)
    assert bad.status_code == 422 and "sum to 1" in bad.text
    assert client.post("/projects/shapes/split/preview", data={**form, "seed": "abc"}).status_code == 422
    assert (
        client.post("/projects/shapes/split/preview", data={**form, "split_name": "a b"}).status_code == 422
    )

    saved = client.post("/projects/shapes/split/save", data=form, headers=HX)
    assert saved.status_code == 200
    assert "Locked" in saved.text and 'hx-swap-oob="true"' in saved.text
    again = client.post("/projects/shapes/split/save", data=form, headers=HX)
    assert again.status_code == 409 and "immutable" in again.text
    page = client.get("/projects/shapes/split").text
    assert "Locked" in page and "half" in page and 'value="default"' in page
    detail = client.get("/projects/shapes/split/half")
    assert detail.status_code == 200 and "Split “half”" in detail.text
    assert client.get("/projects/shapes/split/nope").status_code == 404


def test_split_without_samples_says_so(client: TestClient, web_studio: Studio) -> None:
    projects.create_project(web_studio, name="bare", task="classification")
    r = client.post(
        "/projects/bare/split/preview", data={"ratios": "0.8,0.1,0.1", "seed": "1", "split_name": "x"}
    )
    assert r.status_code == 422 and "no samples" in r.text


def test_jobs_page_polls_cancels_and_retries(client: TestClient, web_studio: Studio) -> None:
    empty = client.get("/jobs")
    assert empty.status_code == 200 and "No jobs yet" in empty.text
    assert "dead-letter queue is empty" in client.get("/jobs?tab=dead").text
    pid = projects.create_project(web_studio, name="p", task="library")["id"]
    job = web_studio.queue.enqueue(
        "import", {"source": "/nowhere", "format": "folder", "mode": "copy"}, project_id=pid
    )
    r = client.get("/jobs")
    assert 'hx-trigger="every 2s"' in r.text and 'data-polling="on"' in r.text
    assert "Cancel</button>" in r.text
    r = client.post(f"/jobs/{job.id}/cancel", headers=HX)
    assert r.status_code == 200 and "status-cancelled" in r.text and 'data-polling="off"' in r.text
    again = client.post(f"/jobs/{job.id}/cancel", headers=HX)
    assert again.status_code == 409 and again.headers["HX-Retarget"] == "#job-errors"
    r = client.post(f"/jobs/{job.id}/requeue", headers=HX)
    assert r.status_code == 200 and "status-queued" in r.text
    # a permanent failure shows its message, the traceback's tail and a Retry button
    Worker(web_studio).run_one(job.id)
    table = client.get("/jobs/table?tab=failed").text
    assert "source not found" in table and "Retry</button>" in table
    detail = client.get(f"/jobs/{job.id}").text
    tail = re.search(r'<pre id="job-traceback" class="code">([^<]*)</pre>', detail)
    assert tail and "source not found" in tail.group(1)
    assert client.get("/jobs/424242").status_code == 404
    dead = web_studio.queue.enqueue("import", {}, max_attempts=1)
    web_studio.queue.claim("w", job_id=dead.id)
    web_studio.queue.fail(dead.id, "w", {"message": "gave up"}, transient=True)
    tab = client.get("/jobs?tab=dead").text
    assert "status-dead" in tab and "gave up" in tab and f'data-job-id="{job.id}"' not in tab


def test_jobs_page_opens_the_job_in_its_address(client: TestClient, web_studio: Studio) -> None:
    """/jobs?job=N (the import panel links there) renders job N's detail, open, as readable fields:
    parameters, progress, timings with the duration, attempts, the error with its traceback, events."""
    pid = projects.create_project(web_studio, name="p", task="library")["id"]
    job = web_studio.queue.enqueue(
        "import", {"source": "/nowhere/at-all", "format": "folder", "mode": "copy"}, project_id=pid
    )
    web_studio.queue.event(job.id, "log", {"message": "looking for the folder"})
    Worker(web_studio).run_one(job.id)
    page = client.get(f"/jobs?job={job.id}")
    assert page.status_code == 200
    html = page.text
    dialog = re.search(r'<dialog id="job-dialog"[^>]*>', html)
    assert dialog and "data-open-on-load" in dialog.group(0) and 'data-url-param="job"' in dialog.group(0)
    assert f'data-detail-id="{job.id}"' in html
    params = re.search(r'<dl id="job-params".*?</dl>', html, re.S)
    assert params and '<dt class="mono">source</dt><dd class="break">/nowhere/at-all</dd>' in params.group(0)
    assert '"source"' not in html  # no raw JSON of the parameters
    timings = re.search(r'<dl id="job-timings".*?</dl>', html, re.S)
    assert timings
    for label in ("Queued", "Started", "Finished", "Duration", "Attempts"):
        assert f"<dt>{label}</dt>" in timings.group(0)
    assert re.search(r'data-testid="job-duration">\d+\.\d s<', timings.group(0))
    assert 'data-testid="job-attempts">1 / ' in timings.group(0)
    assert 'role="progressbar" aria-label="Progress of job' in html
    assert "source not found" in html and 'id="job-traceback"' in html
    events = re.findall(r'<li data-kind="(\w+)">', html)
    assert events[0] == "status" and "log" in events and events[-1] == "status"
    assert "looking for the folder" in html and "status-failed" in html
    # the list has a duration column for finished jobs
    table = client.get("/jobs/table").text
    assert '<th scope="col" class="num">Duration</th>' in table
    assert re.search(r'<td class="num nowrap" data-testid="job-duration">\d+\.\d s</td>', table)
    # a job that is not there: the page still renders, its dialog says why
    missing = client.get("/jobs?job=999999")
    assert missing.status_code == 200 and "job 999999 not found" in missing.text
    assert client.get("/jobs?job=abc").status_code == 200
    # no job asked for: the dialog stays closed
    assert "data-open-on-load" not in client.get("/jobs").text


def test_dataset_page_opens_the_sample_in_its_address(client: TestClient, shapes: str) -> None:
    """/projects/<name>?sample=ID is the sample detail's own address: the page renders it, open."""
    grid = client.get("/projects/shapes").text
    ids = re.findall(r'data-sample-id="(\d+)"', grid)
    assert len(ids) == 12 and "data-open-on-load" not in grid
    page = client.get(f"/projects/shapes?sample={ids[3]}&label=circle").text
    dialog = re.search(r'<dialog id="detail"[^>]*>', page)
    assert dialog and "data-open-on-load" in dialog.group(0) and 'data-url-param="sample"' in dialog.group(0)
    assert f'data-detail-id="{ids[3]}"' in page and 'aria-label="Next sample"' in page
    assert page.count('data-testid="tile"') == 4  # the filters still apply to the grid behind it
    missing = client.get("/projects/shapes?sample=999999").text
    assert "data-open-on-load" in missing and "sample 999999" in missing


def test_api_docs_link_back_to_the_app(client: TestClient) -> None:
    html = client.get("/docs").text
    assert '<a href="/"' in html and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    # the title's description in the explorer links back too
    assert "](/)" in client.get("/openapi.json").json()["info"]["description"]
    assert 'href="/docs"' in client.get("/projects").text


def test_job_duration_wording() -> None:
    from vistudio.web.pages.jobs import duration

    assert [duration(x) for x in (None, 0.42, 42, 185, 7620)] == [
        "—",
        "0.4 s",
        "42 s",
        "3 min 05 s",
        "2 h 07 min",
    ]


def test_login_sets_cookie_and_refuses_offsite_next(tmp_path: Path) -> None:
    studio = open_studio(web_settings(tmp_path, api_token="s3cret"))
    try:
        client = TestClient(create_app(studio))
        r = client.get("/jobs", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/jobs"
        form = client.get("/login?next=/jobs")
        assert form.status_code == 200 and 'value="/jobs"' in form.text and 'for="token"' in form.text
        assert 'value="/"' in client.get("/login?next=//evil.example").text
        wrong = client.post("/login", data={"token": "nope", "next": "/jobs"}, follow_redirects=False)
        assert wrong.status_code == 401 and "not right" in wrong.text
        for evil in (
            "//evil.example/x",
            "http://evil.example",
            "https:evil",
            "/\\evil.example",
            "javascript:alert(1)",
        ):
            r = client.post("/login", data={"token": "s3cret", "next": evil}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/", evil
        r = client.post("/login", data={"token": "s3cret", "next": "/jobs?tab=dead"}, follow_redirects=False)
        assert r.headers["location"] == "/jobs?tab=dead"
        cookie = r.headers["set-cookie"].lower()
        assert "vistudio_token=s3cret" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/jobs").status_code == 200  # the cookie now lets pages through
    finally:
        studio.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/projects/a", "/projects/a"),
        ("//x.org", "/"),
        ("http://x.org", "/"),
        ("/a\r\nSet-Cookie: x", "/"),
        ("relative", "/"),
    ],
)
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_library_dataset_filters_by_tag(client, studio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from factories import make_class_folders, run_import
    from vistudio.services import projects as project_service

    project_service.create_project(studio, name="album", task="library")
    run_import(studio, "album", make_class_folders(tmp_path / "trip", {"beach": 3, "city": 2}))
    page = client.get("/projects/album")
    assert page.status_code == 200
    assert 'id="f-tag"' in page.text and "beach (3)" in page.text
    assert 'id="f-label"' not in page.text  # a library has no classes to filter by
    grid = client.get("/projects/album", params={"tag": "city"}, headers={"HX-Request": "true"})
    assert grid.status_code == 200 and grid.text.count('data-testid="tile"') == 2


def test_oversized_ids_in_urls_are_refused_not_a_server_error(client: TestClient, shapes: str) -> None:
    big = "9" * 30  # past SQLite's 64-bit integers
    for method, url in (
        ("GET", f"/projects/{shapes}/samples/{big}"),
        ("GET", f"/projects/{shapes}/imports/{big}"),
        ("GET", f"/jobs/{big}"),
        ("POST", f"/jobs/{big}/cancel"),
        ("POST", f"/jobs/{big}/requeue"),
    ):
        r = client.request(method, url, headers=HX)
        assert r.status_code == 422, (url, r.status_code, r.text[:200])


def test_cross_site_form_posts_are_refused(client: TestClient, web_studio: Studio) -> None:
    # Without an API token any web page could submit a form to 127.0.0.1 (CSRF); browsers
    # say where such a request comes from, in Origin or Sec-Fetch-Site.
    projects.create_project(web_studio, name="keep", task="classification")
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver:8080"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        r = client.post("/projects/keep/delete", data={"confirm": "keep"}, headers=headers)
        assert r.status_code == 403, headers
        r = client.post("/projects", data={"name": "evil", "task": "library"}, headers=headers)
        assert r.status_code == 403, headers
    assert [p["name"] for p in projects.list_projects(web_studio)["items"]] == ["keep"]
    # the page's own requests (same origin) and non-browser clients still work
    ok = client.post(
        "/projects", data={"name": "mine", "task": "library"}, headers={"Origin": "http://testserver", **HX}
    )
    assert ok.status_code == 204
    assert client.post("/projects/mine/delete", data={"confirm": "mine"}, headers=HX).status_code == 200
    assert client.get("/projects", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
