"""The map through its front doors: photos imported with EXIF GPS positions, read back as counts,
clusters and areas by the REST API and the CLI; the grid's ``bbox`` filter; hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from factories import cli, draw_image, run_import
from vistudio.api.app import create_app
from vistudio.services import projects
from vistudio.studio import Studio

LISBON = (38.72, -9.14)
PORTO = (41.15, -8.61)
FIJI = (-17.71, 178.07)
SAMOA = (-13.83, -171.76)


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    return (float(d), float(m), round((value - d - m / 60) * 3600, 4))


def photo(path: Path, *, seed: int, taken: datetime, gps: tuple[float, float] | None) -> Path:
    draw_image(path, seed=seed)
    im = Image.open(path)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if gps is not None:
        g = exif.get_ifd(0x8825)
        g[1], g[2] = ("N" if gps[0] >= 0 else "S"), _dms(gps[0])
        g[3], g[4] = ("E" if gps[1] >= 0 else "W"), _dms(gps[1])
    im.convert("RGB").save(path, "JPEG", exif=exif)
    return path


def album(root: Path) -> Path:
    photo(root / "lisbon1.jpg", seed=1, taken=datetime(2019, 6, 15, 10, 0), gps=LISBON)
    photo(root / "lisbon2.jpg", seed=2, taken=datetime(2019, 6, 16, 10, 0), gps=(38.7201, -9.1402))
    photo(root / "porto.jpg", seed=3, taken=datetime(2018, 1, 1), gps=PORTO)
    photo(root / "fiji.jpg", seed=4, taken=datetime(2020, 5, 1), gps=FIJI)
    photo(root / "samoa.jpg", seed=5, taken=datetime(2021, 5, 1), gps=SAMOA)
    photo(root / "nogps.jpg", seed=6, taken=datetime(2017, 1, 1), gps=None)
    return root


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


@pytest.fixture
def trip(studio: Studio, tmp_path: Path) -> str:
    projects.create_project(studio, name="trip", task="library")
    assert run_import(studio, "trip", album(tmp_path / "album"))["status"] == "succeeded"
    return "trip"


def _error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


def test_api(client: TestClient, trip: str) -> None:
    s = client.get("/api/v1/projects/trip/geo").json()
    assert (s["with_gps"], s["without_gps"], s["total"]) == (5, 1, 6)
    w, so, e, n = s["bounds"]
    assert w == pytest.approx(-171.76, abs=1e-3) and e == pytest.approx(178.07, abs=1e-3)
    assert so == pytest.approx(-17.71, abs=1e-3) and n == pytest.approx(41.15, abs=1e-3)
    assert s["tiles"] is None  # the test workspace is offline: no tile server is named

    world = client.get("/api/v1/projects/trip/geo/clusters", params={"zoom": 0}).json()
    assert world["photos"] == 5 and sum(c["count"] for c in world["clusters"]) == 5
    # at a city zoom around Lisbon: the two Lisbon photos are one cluster, Porto is outside
    city = client.get(
        "/api/v1/projects/trip/geo/clusters", params={"zoom": 12, "bbox": "-9.3,38.6,-9.0,38.8"}
    ).json()
    assert [c["count"] for c in city["clusters"]] == [2]
    c = city["clusters"][0]
    assert c["lat"] == pytest.approx(38.72005, abs=1e-4) and c["bounds"][0] <= c["lon"] <= c["bounds"][2]
    assert client.get(c["thumbnail_url"]).status_code == 200
    # deep enough, the two Lisbon photos (about 20 m apart) are two markers
    deep = client.get(
        "/api/v1/projects/trip/geo/clusters", params={"zoom": 20, "bbox": "-9.141,38.719,-9.139,38.721"}
    )
    assert [c["count"] for c in deep.json()["clusters"]] == [1, 1]

    # across the antimeridian: Fiji and Samoa, newest first
    pacific = client.get("/api/v1/projects/trip/geo/photos", params={"bbox": "170,-25,-170,-10"}).json()
    assert [i["name"].rsplit("/", 1)[-1] for i in pacific["items"]] == ["samoa.jpg", "fiji.jpg"]
    assert pacific["total"] == 2 and pacific["items"][0]["time"].startswith("2021-05-01")
    everything = client.get("/api/v1/projects/trip/geo/photos", params={"limit": 2, "offset": 1}).json()
    assert everything["total"] == 5 and [i["name"] for i in everything["items"]] == [
        "fiji.jpg",
        "lisbon2.jpg",
    ]

    # the grid's filter: the same photos as the area's
    grid = client.get("/api/v1/samples", params={"project": "trip", "bbox": "170,-25,-170,-10"}).json()
    assert grid["total"] == 2 and {i["id"] for i in grid["items"]} == {i["id"] for i in pacific["items"]}
    portugal = client.get(
        "/api/v1/samples", params={"project": "trip", "bbox": "-10,36,-6,42", "sort": "name"}
    )
    assert [i["name"] for i in portugal.json()["items"]] == ["lisbon1.jpg", "lisbon2.jpg", "porto.jpg"]


BAD_BBOXES = [
    "1,2,3",
    "1,2,3,4,5",
    "nan,0,1,1",
    "0,0,1,NaN",
    "0,-91,1,1",
    "0,0,1,91",
    "-200,0,1,1",
    "0,0,181,1",
    "a,b,c,d",
    "0,10,1,5",
    "",  # an empty bbox on the grid is no filter, but on the map it is the world: see below
    "1,2,3," + "9" * 190,
    "x" * 201,
]


@pytest.mark.parametrize("bbox", [b for b in BAD_BBOXES if b])
@pytest.mark.parametrize("path", ["geo/clusters", "geo/photos"])
def test_api_bad_bbox(client: TestClient, studio: Studio, bbox: str, path: str) -> None:
    projects.create_project(studio, name="p", task="library")
    err = _error(client.get(f"/api/v1/projects/p/{path}", params={"bbox": bbox, "zoom": 3}), 422)
    assert err["message"]
    if len(bbox) <= 200:
        assert "bbox" in err["message"]
        _error(client.get("/api/v1/samples", params={"project": "p", "bbox": bbox}), 422)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("geo/clusters", {"zoom": -1}),
        ("geo/clusters", {"zoom": 23}),
        ("geo/clusters", {"zoom": "far"}),
        ("geo/clusters", {"zoom": 1.5}),
        ("geo/clusters", {"zoom": 22}),  # the whole world at the deepest zoom: too many cells
        ("geo/clusters", {"zoom": 22, "bbox": "-180,-90,180,90"}),
        ("geo/photos", {"limit": 0}),
        ("geo/photos", {"limit": 10**9}),
        ("geo/photos", {"offset": -1}),
        ("geo/photos", {"offset": 2**63}),
    ],
)
def test_api_hostile_input(client: TestClient, studio: Studio, path: str, params: dict[str, Any]) -> None:
    projects.create_project(studio, name="p", task="library")
    err = _error(client.get(f"/api/v1/projects/p/{path}", params=params), 422)
    assert err["message"]


def test_api_empty_and_unknown(client: TestClient, studio: Studio) -> None:
    for path in ("geo", "geo/clusters", "geo/photos"):
        _error(client.get(f"/api/v1/projects/nope/{path}"), 404, "not_found")
    _error(client.get("/api/v1/projects/" + "x" * 300 + "/geo"), 422)
    projects.create_project(studio, name="p", task="library")
    assert client.get("/api/v1/projects/p/geo").json()["bounds"] is None
    assert client.get("/api/v1/projects/p/geo/clusters", params={"bbox": ""}).json()["clusters"] == []
    assert client.get("/api/v1/projects/p/geo/photos").json() == {
        "project": {"id": 1, "name": "p"},
        "bbox": [-180.0, -90.0, 180.0, 90.0],
        "items": [],
        "total": 0,
        "offset": 0,
        "limit": 100,
    }


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    assert cli(capsys, ws, "project", "create", "trip", "--task", "library")[0] == 0
    assert cli(capsys, ws, "import", "trip", str(album(tmp_path / "album")))[0] == 0
    code, out = cli(capsys, ws, "geo", "trip")
    assert code == 0 and (out["with_gps"], out["without_gps"]) == (5, 1)
    code, out = cli(capsys, ws, "geo", "trip", "--bbox", "-10,36,-6,42", "--zoom", "6")
    assert code == 0 and sorted(c["count"] for c in out["clusters"]) == [1, 2] and out["photos"] == 3
    code, out = cli(capsys, ws, "geo", "trip", "--bbox", "170,-25,-170,-10")
    assert code == 0 and out["zoom"] == 0 and out["photos"] == 2
    code, out = cli(capsys, ws, "geo", "trip", "--bbox", "1,2,3")
    assert code == 1 and out["error"]["code"] == "invalid_input" and "four numbers" in out["error"]["message"]
    code, out = cli(capsys, ws, "geo", "trip", "--zoom", "30")
    assert code == 1 and "zoom" in out["error"]["message"]
    code, out = cli(capsys, ws, "geo", "nope")
    assert code == 1 and out["error"]["code"] == "not_found"


def test_cli_human_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.cli.main import main

    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "project", "create", "trip", "--task", "library"]) == 0
    assert main(["--workspace", str(ws), "import", "trip", str(album(tmp_path / "album"))]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(ws), "geo", "trip"]) == 0
    out = capsys.readouterr().out
    assert "5 photos with a GPS position, 1 without" in out and "bounds" in out
    assert main(["--workspace", str(ws), "--wide", "geo", "trip", "--zoom", "3"]) == 0
    out = capsys.readouterr().out
    assert "5 photos in" in out and "clusters at zoom 3" in out


@pytest.mark.postgres
def test_geo_on_postgresql(tmp_path: Path) -> None:
    """The same reads on PostgreSQL: its floor(), NULL ordering and the antimeridian."""
    from factories import POSTGRES_URL, postgres_studio
    from vistudio.services import geo

    if not POSTGRES_URL:
        pytest.skip("set VISTUDIO_TEST_POSTGRES_URL to run against PostgreSQL")
    with postgres_studio(tmp_path / "ws", batch_size=2) as studio:
        projects.create_project(studio, name="trip", task="library")
        assert run_import(studio, "trip", album(tmp_path / "album"))["status"] == "succeeded"
        assert geo.summary(studio, project="trip")["with_gps"] == 5
        world = geo.clusters(studio, project="trip", zoom=2)
        assert world["photos"] == 5
        pacific = geo.photos(studio, project="trip", bbox="170,-25,-170,-10")
        assert [i["name"] for i in pacific["items"]] == ["samoa.jpg", "fiji.jpg"]
        city = geo.clusters(studio, project="trip", zoom=12, bbox="-9.3,38.6,-9.0,38.8")
        assert [c["count"] for c in city["clusters"]] == [2]


def test_bbox_in_saved_views_edits_and_exports(studio: Studio, trip: str) -> None:
    """The grid's area filter goes wherever the grid's filters go: saved views, bulk edits (a
    ``filter`` selection) and dataset exports."""
    from vistudio.errors import InvalidInput
    from vistudio.services import samples, views
    from vistudio.services.dataset_export.selection import check_filters

    views.save_view(studio, project=trip, name="pacific", query={"bbox": "170,-25,-170,-10"})
    chosen = views.view_filter(studio, project=trip, name="pacific")
    assert chosen == {"bbox": "170,-25,-170,-10"}
    got = samples.list_samples(studio, project=trip, **chosen)
    assert sorted(i["name"] for i in got["items"]) == ["fiji.jpg", "samoa.jpg"]
    with pytest.raises(InvalidInput, match="latitude"):
        views.save_view(studio, project=trip, name="bad", query={"bbox": "0,-95,1,1"})
    assert check_filters({"bbox": "-10,36,-6,42"}) == {"bbox": "-10,36,-6,42"}
    from vistudio.services import edits

    done = edits.edit_tags(studio, project=trip, selection={"filter": chosen}, add=["pacific"])
    assert done["changed"] == 2
    tagged = samples.list_samples(studio, project=trip, tag="pacific")
    assert sorted(i["name"] for i in tagged["items"]) == ["fiji.jpg", "samoa.jpg"]
