"""The timeline and places through their front doors: an import and a library scan fill places and
file dates; the REST API and the CLI read them back; hostile input gets clear errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from factories import cli, draw_image, run_import
from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.services import library, projects, samples
from vistudio.studio import Studio

LISBON = (38.72, -9.14)
PACIFIC = (0.0, -140.0)


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    return (float(d), float(m), round((value - d - m / 60) * 3600, 4))


def photo(
    path: Path,
    *,
    seed: int,
    taken: datetime | None = None,
    gps: tuple[float, float] | None = None,
    mtime: datetime | None = None,
) -> Path:
    """A JPEG with an EXIF date and GPS position when given, and the file time ``mtime``."""
    draw_image(path, seed=seed, fmt="PNG" if path.suffix == ".png" else None)
    im = Image.open(path)
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if gps is not None:
        g = exif.get_ifd(0x8825)
        g[1], g[2] = ("N" if gps[0] >= 0 else "S"), _dms(gps[0])
        g[3], g[4] = ("E" if gps[1] >= 0 else "W"), _dms(gps[1])
    im.convert("RGB").save(path, "JPEG", exif=exif)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def album(root: Path) -> Path:
    photo(root / "lisbon.jpg", seed=1, taken=datetime(2019, 6, 15, 10, 0), gps=LISBON)
    photo(root / "sea.jpg", seed=2, taken=datetime(2019, 6, 14, 9, 0), gps=PACIFIC)
    photo(root / "undated.jpg", seed=3, mtime=datetime(2018, 2, 3, 4, 5, 6))
    photo(root / "old.jpg", seed=4, taken=datetime(2005, 1, 1))
    return root


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def _error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


def _by_name(studio: Studio, project: str) -> dict[str, dict[str, Any]]:
    items = samples.list_samples(studio, project=project, limit=100)["items"]
    return {s["name"].rsplit("/", 1)[-1]: s for s in items}


def test_import_fills_places_and_file_dates(studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="trip", task="library")
    job = run_import(studio, "trip", album(tmp_path / "album"))
    assert job["status"] == "succeeded", job
    got = _by_name(studio, "trip")
    assert got["lisbon.jpg"]["place"] == {
        "city": "Lisbon",
        "region": "Lisbon",
        "country": "Portugal",
        "country_code": "PT",
    }
    assert got["sea.jpg"]["place"] is None  # 990 km from the nearest town
    assert got["undated.jpg"]["taken_at"] is None and got["undated.jpg"]["file_time"] == "2018-02-03T04:05:06"
    detail = samples.get_sample(studio, got["lisbon.jpg"]["id"])
    assert detail["place"]["country"] == "Portugal" and detail["gps"] is not None


def test_library_scan_fills_places_and_file_dates(studio: Studio, tmp_path: Path) -> None:
    root = album(tmp_path / "lib")
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(root)], allowed=[tmp_path])
    job = library.start_scan(studio, project="lib")
    Worker(studio).run_one(job_id=job["id"])
    assert studio.queue.get(job["id"]).status == "succeeded"
    got = _by_name(studio, "lib")
    assert got["lisbon.jpg"]["place"]["city"] == "Lisbon"
    assert got["undated.jpg"]["file_time"] == "2018-02-03T04:05:06"


def test_api(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="trip", task="library")
    assert run_import(studio, "trip", album(tmp_path / "album"))["status"] == "succeeded"
    body = client.get("/api/v1/projects/trip/timeline").json()
    assert [(g["key"], g["count"]) for g in body["groups"]] == [
        ("2019-06", 2),
        ("2018-02", 1),
        ("2005-01", 1),
    ]
    assert body["no_date"] == 0 and body["total"] == 4 and body["backfill"] is None
    years = client.get("/api/v1/projects/trip/timeline", params={"by": "year"}).json()
    assert [g["label"] for g in years["groups"]] == ["2019", "2018", "2005"]
    page = client.get("/api/v1/projects/trip/timeline/photos", params={"limit": 2}).json()
    assert [i["name"] for i in page["items"]] == ["lisbon.jpg", "sea.jpg"]
    assert page["items"][0]["place"]["city"] == "Lisbon" and page["items"][0]["time_source"] == "exif"
    rest = client.get("/api/v1/projects/trip/timeline/photos", params={"cursor": page["next_cursor"]}).json()
    assert [(i["name"], i["time_source"]) for i in rest["items"]] == [
        ("undated.jpg", "file"),
        ("old.jpg", "exif"),
    ]
    assert rest["next_cursor"] is None
    jump = client.get("/api/v1/projects/trip/timeline/photos", params={"at": "2018"}).json()
    assert [i["name"] for i in jump["items"]] == ["undated.jpg", "old.jpg"]
    job = client.post("/api/v1/projects/trip/places")
    assert job.status_code == 202 and job.json()["job"]["kind"] == "places"
    assert client.post("/api/v1/projects/trip/places").json()["job"]["id"] == job.json()["job"]["id"]
    sample = client.get(f"/api/v1/samples/{page['items'][0]['id']}").json()
    assert sample["sample"]["place"]["city"] == "Lisbon"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "garbage"}, 422),
        ({"cursor": "2019-06-01T00:00:00~99999999999999999999"}, 422),
        ({"cursor": "x" * 101}, 422),
        ({"at": "not-a-date"}, 422),
        ({"at": "2019-02-30"}, 422),
        ({"at": "2019-06", "cursor": "nodate~3"}, 422),
        ({"limit": 0}, 422),
        ({"limit": 10**9}, 422),
        ({"limit": "many"}, 422),
    ],
)
def test_api_hostile_input(client: TestClient, studio: Studio, params: dict[str, Any], status: int) -> None:
    projects.create_project(studio, name="p", task="library")
    err = _error(client.get("/api/v1/projects/p/timeline/photos", params=params), status)
    assert err["message"]


def test_api_unknown_project_and_grouping(client: TestClient, studio: Studio) -> None:
    _error(client.get("/api/v1/projects/nope/timeline"), 404, "not_found")
    _error(client.get("/api/v1/projects/nope/timeline/photos"), 404, "not_found")
    _error(client.post("/api/v1/projects/nope/places"), 404, "not_found")
    projects.create_project(studio, name="p", task="library")
    _error(client.get("/api/v1/projects/p/timeline", params={"by": "week"}), 422)
    _error(client.get("/api/v1/projects/" + "x" * 300 + "/timeline"), 422)


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    assert cli(capsys, ws, "project", "create", "trip", "--task", "library")[0] == 0
    code, out = cli(capsys, ws, "import", "trip", str(album(tmp_path / "album")))
    assert code == 0, out
    code, out = cli(capsys, ws, "timeline", "trip", "--by", "year")
    assert code == 0 and [(g["key"], g["count"]) for g in out["groups"]] == [
        ("2019", 2),
        ("2018", 1),
        ("2005", 1),
    ]
    code, out = cli(capsys, ws, "timeline", "trip", "--at", "2019-06", "--limit", "1")
    assert code == 0 and out["items"][0]["name"] == "lisbon.jpg" and out["next_cursor"]
    code, nxt = cli(capsys, ws, "timeline", "trip", "--cursor", out["next_cursor"], "--limit", "5")
    assert code == 0 and [i["name"] for i in nxt["items"]] == ["sea.jpg", "undated.jpg", "old.jpg"]
    code, out = cli(capsys, ws, "timeline", "trip", "--at", "June")
    assert code == 1 and out["error"]["code"] == "invalid_input"
    code, out = cli(capsys, ws, "timeline", "trip", "--cursor", "bad")
    assert code == 1 and "cursor" in out["error"]["message"]
    code, out = cli(capsys, ws, "timeline", "nope")
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = cli(capsys, ws, "places", "trip")
    assert code == 0 and out["job"]["status"] == "succeeded" and out["report"]["looked_up"] == 0
    code, out = cli(capsys, ws, "places", "trip", "--no-wait")
    assert code == 0 and out["job"]["status"] == "queued"


def test_cli_human_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.cli.main import main

    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "project", "create", "trip", "--task", "library"]) == 0
    assert main(["--workspace", str(ws), "import", "trip", str(album(tmp_path / "album"))]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(ws), "--wide", "timeline", "trip"]) == 0
    out = capsys.readouterr().out
    assert "June 2019" in out and "February 2018" in out
    assert main(["--workspace", str(ws), "--wide", "timeline", "trip", "--at", "2018"]) == 0
    out = capsys.readouterr().out
    assert "undated.jpg" in out and "(file)" in out
    assert main(["--workspace", str(ws), "--wide", "timeline", "trip", "--at", "2019"]) == 0
    assert "Lisbon, Portugal" in capsys.readouterr().out


@pytest.mark.postgres
def test_timeline_on_postgresql(tmp_path: Path) -> None:
    """The same reads on PostgreSQL: its range-count statement, NULL ordering and cursors."""
    from factories import POSTGRES_URL, postgres_studio
    from vistudio.services import places, timeline

    if not POSTGRES_URL:
        pytest.skip("set VISTUDIO_TEST_POSTGRES_URL to run against PostgreSQL")
    with postgres_studio(tmp_path / "ws", batch_size=2) as studio:
        projects.create_project(studio, name="trip", task="library")
        photo(tmp_path / "album" / "nodate.jpg", seed=9, mtime=datetime(1970, 1, 2))  # a placeholder time
        assert run_import(studio, "trip", album(tmp_path / "album"))["status"] == "succeeded"
        got = timeline.buckets(studio, project="trip", by="day")
        assert [(g["key"], g["count"]) for g in got["groups"]] == [
            ("2019-06-15", 1),
            ("2019-06-14", 1),
            ("2018-02-03", 1),
            ("2005-01-01", 1),
        ]
        assert got["total"] == 5 and got["no_date"] + got["dated"] == 5
        names = []
        page = timeline.photos(studio, project="trip", limit=1)
        while True:
            names += [i["name"] for i in page["items"]]
            if not page["next_cursor"]:
                break
            page = timeline.photos(studio, project="trip", limit=1, cursor=page["next_cursor"])
        assert names[:4] == ["lisbon.jpg", "sea.jpg", "undated.jpg", "old.jpg"] and len(names) == 5
        assert [i["name"] for i in timeline.photos(studio, project="trip", at="2018-12")["items"]][:2] == [
            "undated.jpg",
            "old.jpg",
        ]
        job = places.start_places(studio, project="trip")
        Worker(studio).run_one(job_id=job["id"])
        assert studio.queue.get(job["id"]).status == "succeeded"
