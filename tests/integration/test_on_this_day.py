"""On this day through the service, the API and the CLI: photos on the edges of days, years and
leap days, hidden duplicates, undated photos; the years and photos equal a brute force over the
same photos for random dates."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.db import Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.services import albums, projects
from vistudio.studio import Studio

_n = itertools.count()
EDGE_DAYS = [(1, 1), (12, 31), (2, 28), (2, 29), (3, 1), (6, 15)]


def _moments() -> list[datetime | None]:
    out: list[datetime | None] = [None, None]
    for year in range(2015, 2026):
        for month, day in EDGE_DAYS:
            try:
                d = datetime(year, month, day)
            except ValueError:
                continue
            out += [d, d + timedelta(hours=13, minutes=5), d + timedelta(days=1) - timedelta(microseconds=1)]
            out.append(d - timedelta(seconds=1))
    return out


@pytest.fixture
def stored(studio: Studio) -> tuple[Studio, dict[int, datetime | None], set[int]]:
    projects.create_project(studio, name="lib", task="library")
    moments = _moments()
    with studio.sessions.begin() as s:
        pid = projects.find_project(s, "lib").id
        rows = [
            {
                "project_id": pid,
                "sha256": f"{next(_n):064x}",
                "name": f"p{i}.jpg",
                "storage": "copy",
                "path": "media/x.jpg",
                "width": 4,
                "height": 3,
                "format": "JPEG",
                "bytes": 1,
                "phash": "0" * 16,
                "exif": {},
                # every third photo dated by its file only: the timeline's date counts
                "taken_at": None if i % 3 == 0 else t,
                "file_time": t,
                "sort_time": t,
            }
            for i, t in enumerate(moments)
        ]
        ids = list(s.scalars(insert(Sample).returning(Sample.id, sort_by_parameter_order=True), rows))
        hidden = set(ids[5::7])
        for sid in hidden:
            s.add(HiddenSample(sample_id=sid, project_id=pid))
    return studio, dict(zip(ids, moments, strict=True)), hidden


def brute_force(
    photos: dict[int, datetime | None], hidden: set[int], on: date
) -> list[tuple[int, list[int]]]:
    def shows(t: datetime) -> bool:
        if t.year >= on.year:
            return False
        if (t.month, t.day) == (on.month, on.day):
            return True
        return (t.month, t.day) == (2, 29) and (on.month, on.day) == (2, 28) and on.year % 4 != 0

    kept = sorted((t, i) for i, t in photos.items() if t is not None and i not in hidden and shows(t))
    years = sorted({t.year for t, _ in kept}, reverse=True)
    return [(y, [i for t, i in kept if t.year == y]) for y in years]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    on=st.sampled_from(
        [
            date(y, m, d)
            for y in (2016, 2019, 2020, 2024, 2025, 2026)
            for m, d in EDGE_DAYS
            if (m, d) != (2, 29)
        ]
        + [date(2024, 2, 29), date(2020, 2, 29)]
    )
    | st.dates(min_value=date(2014, 1, 1), max_value=date(2027, 12, 31))
)
def test_on_this_day_equals_a_brute_force(
    stored: tuple[Studio, dict[int, datetime | None], set[int]], on: date
) -> None:
    studio, photos, hidden = stored
    got = albums.on_this_day(studio, project="lib", day=on, per_year=200)
    expected = brute_force(photos, hidden, on)
    assert [(y["year"], [p["id"] for p in y["photos"]]) for y in got["years"]] == expected
    assert [y["count"] for y in got["years"]] == [len(ids) for _, ids in expected]
    assert all(y["years_ago"] == on.year - y["year"] for y in got["years"])
    assert got["total"] == sum(len(ids) for _, ids in expected)


def test_leap_day_and_the_year_boundary(stored: tuple[Studio, dict[int, datetime | None], set[int]]) -> None:
    studio, photos, _ = stored
    feb28 = albums.on_this_day(studio, project="lib", day="2025-02-28", per_year=200)
    y2024 = next(y for y in feb28["years"] if y["year"] == 2024)
    assert {photos[p["id"]].day for p in y2024["photos"]} == {28, 29}  # 29 Feb shows on 28 Feb
    assert y2024["label"] == "1 year ago" and feb28["years"][0]["year"] == 2024
    feb29 = albums.on_this_day(studio, project="lib", day="2024-02-29", per_year=200)
    assert [y["year"] for y in feb29["years"]] == [2020, 2016]
    jan1 = albums.on_this_day(studio, project="lib", day="2025-01-01", per_year=200)
    for y in jan1["years"]:  # 31 December 23:59:59 is the year before, not this day
        assert all((photos[p["id"]].month, photos[p["id"]].day) == (1, 1) for p in y["photos"])
    few = albums.on_this_day(studio, project="lib", day="2025-06-15", per_year=1)
    assert all(len(y["photos"]) == 1 and y["count"] >= 1 for y in few["years"])
    assert albums.on_this_day(studio, project="lib", day="2015-06-15")["years"] == []  # no earlier year


def test_api_and_cli(
    stored: tuple[Studio, dict[int, datetime | None], set[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    studio, _, _ = stored
    c = TestClient(create_app(studio))
    r = c.get("/api/v1/projects/lib/on-this-day", params={"date": "2025-12-31"})
    assert r.status_code == 200 and r.json()["date"] == "2025-12-31" and len(r.json()["years"]) == 10
    assert c.get("/api/v1/projects/lib/on-this-day").status_code == 200  # today
    for bad in ("2025-02-29", "31/12/2025", "2025-1-1", "x" * 11):
        assert c.get("/api/v1/projects/lib/on-this-day", params={"date": bad}).status_code == 422, bad
    assert c.get("/api/v1/projects/lib/on-this-day", params={"per_year": 0}).status_code == 422
    assert c.get("/api/v1/projects/nope/on-this-day").status_code == 404
    ws = ["--workspace", str(studio.settings.home)]
    assert main([*ws, "--json", "on-this-day", "lib", "--date", "2020-02-29"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [y["year"] for y in out["years"]] == [2016]
    assert main([*ws, "on-this-day", "lib", "--date", "2020-02-29"]) == 0
    assert "4 years ago" in capsys.readouterr().out
    assert main([*ws, "--json", "on-this-day", "lib", "--date", "soon"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "invalid_input"
