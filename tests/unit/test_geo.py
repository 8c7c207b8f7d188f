"""The map's clustering and area queries (services/geo.py) against a brute-force reference in Python:
counts add up to the photos in the area, every photo is in exactly one cluster, the antimeridian,
bbox parsing, the bbox filter of the grid."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from vistudio.db import Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.errors import InvalidInput, NotFound
from vistudio.services import geo, projects, samples
from vistudio.services.geo import BBox, cell_of, parse_bbox
from vistudio.studio import Studio


def _rows(pid: int, points: list[tuple[float | None, float | None]], start: int = 0) -> list[dict[str, Any]]:
    base = datetime(2020, 1, 1)
    return [
        {
            "project_id": pid,
            "sha256": f"{start + i + 1:064x}",
            "name": f"p{start + i:05d}.jpg",
            "storage": "copy",
            "path": "media/x.jpg",
            "width": 8,
            "height": 8,
            "format": "JPEG",
            "bytes": 10,
            "phash": "0" * 16,
            "exif": {},
            "gps_lat": lat,
            "gps_lon": lon,
            # a few undated; the rest one hour apart, not in id order
            "taken_at": None if i % 7 == 3 else base + timedelta(hours=(i * 37) % 1000),
            "sort_time": None if i % 7 == 3 else base + timedelta(hours=(i * 37) % 1000),
        }
        for i, (lat, lon) in enumerate(points)
    ]


def _project(studio: Studio, points: list[tuple[float | None, float | None]], name: str = "lib") -> int:
    pid = int(projects.create_project(studio, name=name, task="library")["id"])
    if points:
        with studio.sessions.begin() as s:
            s.execute(insert(Sample), _rows(pid, points))
    return pid


def _ids(studio: Studio, pid: int) -> dict[int, tuple[float | None, float | None]]:
    with studio.sessions() as s:
        return {r.id: (r.gps_lat, r.gps_lon) for r in s.query(Sample).filter(Sample.project_id == pid).all()}


def _reference(
    points: dict[int, tuple[float | None, float | None]], box: BBox, zoom: int
) -> dict[tuple[int, int], list[int]]:
    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for sid, (lat, lon) in points.items():
        if lat is None or lon is None or not box.contains(lat, lon):
            continue
        cells[cell_of(lat, lon, zoom)].append(sid)
    return cells


def _check_against_reference(studio: Studio, pid: int, box: BBox, zoom: int) -> None:
    points = _ids(studio, pid)
    ref = _reference(points, box, zoom)
    got = geo.clusters(studio, project=pid, bbox=box, zoom=zoom)
    assert got["photos"] == sum(len(v) for v in ref.values())
    assert sum(c["count"] for c in got["clusters"]) == got["photos"]
    assert len(got["clusters"]) == len(ref)
    by_cell = {}
    for c in got["clusters"]:
        # the cluster's sample is one of its photos, and its centre lies within its photos' box
        sid = c["sample_id"]
        lat, lon = points[sid]
        assert lat is not None and lon is not None
        cell = cell_of(lat, lon, zoom)
        assert cell not in by_cell, "two clusters for one cell"
        by_cell[cell] = c
        members = ref[cell]
        assert c["count"] == len(members)
        assert sid == max(members)
        w, s, e, n = c["bounds"]
        assert w <= c["lon"] + 1e-9 and c["lon"] - 1e-9 <= e and s <= c["lat"] + 1e-9 and c["lat"] - 1e-9 <= n
        assert math.isclose(c["lat"], sum(points[m][0] for m in members) / len(members), abs_tol=1e-9)  # type: ignore[misc]
    # most photos first
    counts = [c["count"] for c in got["clusters"]]
    assert counts == sorted(counts, reverse=True)


lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)


@st.composite
def boxes(draw: st.DrawFn) -> BBox:
    a, b = draw(lats), draw(lats)
    return BBox(draw(lons), min(a, b), draw(lons), max(a, b))  # west > east: across the antimeridian


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    points=st.lists(
        st.one_of(
            st.tuples(lats, lons),
            # crowds: many photos close together, as in a city
            st.tuples(st.floats(38.70, 38.75), st.floats(-9.2, -9.1)),
            st.tuples(st.floats(-20, -15), st.sampled_from([179.999, -179.999, 180.0, -180.0])),
        ),
        max_size=60,
    ),
    box=boxes(),
    zoom=st.integers(0, geo.MAX_ZOOM),
)
def test_clusters_match_brute_force(
    studio: Studio, points: list[tuple[float, float]], box: BBox, zoom: int
) -> None:
    with studio.sessions.begin() as s:
        s.execute(delete(Sample))
    pid = (
        projects.get_project(studio, "h")
        if _exists(studio, "h")
        else projects.create_project(studio, name="h", task="library")
    )["id"]
    if points:
        with studio.sessions.begin() as s:
            s.execute(insert(Sample), _rows(pid, list(points)))
    if geo._cells_spanned(box, zoom) > geo.MAX_CELLS:
        with pytest.raises(InvalidInput, match="cells"):
            geo.clusters(studio, project=pid, bbox=box, zoom=zoom)
        box = BBox(box.west, box.south, box.west, box.south)  # the corner: always small enough
    _check_against_reference(studio, pid, box, zoom)


def _exists(studio: Studio, name: str) -> bool:
    try:
        projects.get_project(studio, name)
    except NotFound:
        return False
    return True


def test_random_world_every_zoom(studio: Studio) -> None:
    rng = random.Random(1)
    pts: list[tuple[float | None, float | None]] = [
        (rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(1500)
    ]
    pts += [(38.72 + rng.gauss(0, 0.01), -9.14 + rng.gauss(0, 0.01)) for _ in range(500)]
    pts += [(38.72 + rng.gauss(0, 0.0003), -9.14 + rng.gauss(0, 0.0003)) for _ in range(200)]
    pts += [(38.72, -9.14)] * 5  # the same spot: one cluster however deep the zoom
    pts += [(None, None)] * 20 + [(95.0, 10.0), (10.0, 200.0)]  # no position, invalid positions
    pid = _project(studio, pts)
    for zoom in range(0, 7):
        _check_against_reference(studio, pid, BBox(*geo.WORLD), zoom)
    for zoom in (10, 14):
        _check_against_reference(studio, pid, BBox(-9.2, 38.65, -9.05, 38.8), zoom)
    for zoom in (18, 22):
        _check_against_reference(studio, pid, BBox(-9.141, 38.719, -9.139, 38.721), zoom)
    deepest = geo.clusters(studio, project=pid, bbox="-9.141,38.719,-9.139,38.721", zoom=22)
    assert deepest["clusters"][0]["count"] >= 5  # the five at one spot, still together
    world = geo.clusters(studio, project=pid, zoom=0)
    assert world["photos"] == 2205 and len(world["clusters"]) <= 8
    s = geo.summary(studio, project=pid)
    assert (s["with_gps"], s["without_gps"], s["total"]) == (2205, 22, 2227)
    w, so, e, n = s["bounds"]
    assert -180 <= w < e <= 180 and -90 <= so < n <= 90


def test_antimeridian(studio: Studio) -> None:
    # Fiji and Samoa straddle 180°; Lisbon is far away
    pts: list[tuple[float | None, float | None]] = [
        (-17.8, 178.0),
        (-17.7, 179.9),
        (-16.5, -179.9),
        (-13.8, -171.8),
        (38.7, -9.1),
        (-17.0, 180.0),
        (-17.0, -180.0),
    ]
    pid = _project(studio, pts)
    across = geo.clusters(studio, project=pid, bbox="170,-25,-170,-10", zoom=3)
    assert across["photos"] == 6  # all but Lisbon, both copies of the meridian included
    _check_against_reference(studio, pid, BBox(170, -25, -170, -10), 3)
    page = geo.photos(studio, project=pid, bbox="170,-25,-170,-10")
    assert page["total"] == 6 and {round(i["lon"]) for i in page["items"]} == {178, 180, -180, -172}
    # the same area asked for the wrong way round (west < east) is the rest of the world
    other = geo.photos(studio, project=pid, bbox="-170,-25,170,-10")
    assert other["total"] == 0
    # the grid's filter is the same area
    grid = samples.list_samples(studio, project=pid, bbox="170,-25,-170,-10", limit=100)
    assert {i["id"] for i in grid["items"]} == {i["id"] for i in page["items"]}


def test_photos_newest_first_and_paged(studio: Studio) -> None:
    rng = random.Random(2)
    pts: list[tuple[float | None, float | None]] = [
        (rng.uniform(0, 10), rng.uniform(0, 10)) for _ in range(90)
    ]
    pts += [(rng.uniform(20, 30), rng.uniform(20, 30)) for _ in range(30)]
    pid = _project(studio, pts)
    box = "0,0,10,10"
    seen: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = geo.photos(studio, project=pid, bbox=box, offset=offset, limit=25)
        assert page["total"] == 90
        seen += page["items"]
        offset += 25
        if offset >= page["total"]:
            break
    assert len({i["id"] for i in seen}) == 90
    assert all(0 <= i["lat"] <= 10 and 0 <= i["lon"] <= 10 for i in seen)
    dated = [(i["time"], i["id"]) for i in seen if i["time"]]
    assert dated == sorted(dated, reverse=True)
    assert all(i["time"] is None for i in seen[len(dated) :])  # the undated last
    assert len(dated) < 90


def test_hidden_photos_are_left_out(studio: Studio) -> None:
    pid = _project(studio, [(1.0, 1.0), (1.0, 1.0), (2.0, 2.0)])
    first = min(_ids(studio, pid))
    with studio.sessions.begin() as s:
        s.execute(insert(HiddenSample), [{"project_id": pid, "sample_id": first}])
    assert geo.clusters(studio, project=pid, zoom=0)["photos"] == 2
    assert geo.photos(studio, project=pid)["total"] == 2
    assert geo.summary(studio, project=pid)["with_gps"] == 2


def test_empty_and_unknown(studio: Studio) -> None:
    pid = _project(studio, [(None, None)])
    s = geo.summary(studio, project=pid)
    assert (s["with_gps"], s["without_gps"], s["bounds"]) == (0, 1, None)
    assert geo.clusters(studio, project=pid, zoom=5, bbox="-10,-10,10,10")["clusters"] == []
    with pytest.raises(NotFound):
        geo.summary(studio, project="nope")
    with pytest.raises(NotFound):
        geo.clusters(studio, project="nope")


def test_tiles_follow_the_offline_setting(studio: Studio) -> None:
    assert studio.settings.offline and geo.tile_layer(studio) is None
    online = studio.settings.model_copy(update={"offline": False})
    studio_online = type("S", (), {"settings": online})()
    tiles = geo.tile_layer(studio_online)  # type: ignore[arg-type]
    assert (
        tiles is not None and "openstreetmap.org" in tiles["url"] and "OpenStreetMap" in tiles["attribution"]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "four numbers"),
        ("1,2,3,4,5", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("", "four numbers"),
        ("nan,0,1,1", "finite"),
        ("0,0,inf,1", "finite"),
        ("0,-91,1,1", "south latitude -91 is outside"),
        ("0,0,1,90.5", "north latitude 90.5 is outside"),
        ("-181,0,1,1", "west longitude -181"),
        ("0,0,540,1", "east longitude 540"),
        ("0,10,1,5", "south (10) is above north (5)"),
        ("1e999,0,1,1", "finite"),
    ],
)
def test_parse_bbox_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_bbox(text)


def test_parse_bbox_accepts() -> None:
    assert parse_bbox(" -10 , 35.5, 5,44 ") == BBox(-10, 35.5, 5, 44)
    b = parse_bbox("170,-20,-170,0")
    assert b.crosses_antimeridian and b.width == 20 and b.text() == "170,-20,-170,0"
    assert parse_bbox([-180, -90, 180, 90]).width == 360
    with pytest.raises(InvalidInput):
        parse_bbox([1, 2, 3, True])


@pytest.mark.parametrize("zoom", [-1, 23, 1.5, True, "3"])
def test_zoom_out_of_range(studio: Studio, zoom: Any) -> None:
    pid = _project(studio, [(1.0, 1.0)])
    with pytest.raises(InvalidInput, match="zoom"):
        geo.clusters(studio, project=pid, zoom=zoom)


@pytest.mark.parametrize(("offset", "limit"), [(0, 0), (0, 10**9), (-1, 10), (0, True)])
def test_photos_paging_refused(studio: Studio, offset: Any, limit: Any) -> None:
    pid = _project(studio, [(1.0, 1.0)])
    with pytest.raises(InvalidInput):
        geo.photos(studio, project=pid, offset=offset, limit=limit)


def test_grid_bbox_filter(studio: Studio) -> None:
    pid = _project(studio, [(1.0, 1.0), (5.0, 5.0), (None, None), (1.5, 1.5)])
    got = samples.list_samples(studio, project=pid, bbox="0,0,2,2", sort="name")
    assert [i["name"] for i in got["items"]] == ["p00000.jpg", "p00003.jpg"] and got["total"] == 2
    with pytest.raises(InvalidInput, match="four numbers"):
        samples.list_samples(studio, project=pid, bbox="0,0,2")
    # combined with another filter (AND)
    assert samples.list_samples(studio, project=pid, bbox="0,0,2,2", q="p00003")["total"] == 1
